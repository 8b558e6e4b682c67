"""Training loop and checkpoints: accuracy, determinism, transfer learning, config errors."""

from __future__ import annotations

import pytest
import torch

from robustbench_cnn.training import TrainConfig, lr_at
from robustbench_cnn.workflows import load_model, train_model


def test_lenet5_on_digits_reaches_97_percent(store) -> None:
    trained = train_model("lenet5", "digits", TrainConfig.for_dataset("digits"), progress=False)
    assert trained.test_accuracy >= 0.97
    assert trained.card.name == "digits/lenet5-standard" and trained.card.clean_accuracy == trained.test_accuracy
    reloaded = load_model("digits/lenet5-standard", device="cpu")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(reloaded(x), trained.model(x))


def test_same_seed_same_weights(store) -> None:
    config = dict(epochs=1, batch_size=64)
    a = train_model("fastcnn", "digits", TrainConfig.for_dataset("digits", **config), tag="a", progress=False)
    b = train_model("fastcnn", "digits", TrainConfig.for_dataset("digits", **config), tag="b", progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train_model("fastcnn", "digits", TrainConfig.for_dataset("digits", seed=1, **config), tag="c", progress=False)
    assert not torch.equal(c.model.state_dict()["net.0.weight"], sa["net.0.weight"])


def test_normalize_false_trains_on_raw_pixels(store) -> None:
    """The MNIST papers' nets see raw [0, 1] pixels: normalize=False builds the model with mean 0 and std 1, and
    the card and the reloaded model say so."""
    config = TrainConfig.for_dataset("digits", epochs=1, batch_size=64, normalize=False)
    raw = train_model("fastcnn", "digits", config, tag="raw", progress=False)
    assert raw.card.mean == [0.0] and raw.card.std == [1.0]
    assert raw.card.hyperparameters["normalize"] is False
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(raw.model(x), raw.model.net(x))  # the wrapper is the identity on the input
    assert torch.equal(load_model("digits/fastcnn-standard-raw", device="cpu")(x), raw.model(x))
    normalized = train_model(
        "fastcnn", "digits", TrainConfig.for_dataset("digits", epochs=1, batch_size=64), tag="norm", progress=False
    )
    assert normalized.card.std != [1.0]


def make_grey_folder(root, classes=("a", "b", "c"), size=8, per_class=20):
    """A tiny ImageFolder of grey images whose class is the brightness of the left half."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 60, (size, size)).astype(np.uint8)
                img[:, : size // 2] += np.uint8(60 * k)
                Image.fromarray(img, mode="L").save(folder / f"{i}.png")
    return root


def test_transfer_learning_fine_tunes_the_head_on_another_dataset(store, tmp_path) -> None:
    base = train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=2), progress=False)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    other = f"imagefolder:{make_grey_folder(tmp_path / 'grey')}"
    tuned = train_model(
        "lenet5",
        other,
        TrainConfig(epochs=30, batch_size=8, lr=0.03, freeze="features"),
        init_from="digits/lenet5-standard",
        progress=False,
    )
    after = tuned.model.state_dict()
    assert tuned.card.num_classes == 3 and after["net.11.weight"].shape[0] == 3  # a new 3-class head
    body = [k for k in after if k.startswith(("net.0.", "net.3.", "net.7.", "net.9."))]
    assert body and all(torch.equal(after[k], before[k]) for k in body)  # features frozen
    assert tuned.test_accuracy > 0.9  # three brightness classes: the frozen features still separate them
    assert tuned.card.extra["init_from"] == "digits/lenet5-standard" and tuned.card.dataset == other


def test_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="invalid optimizer 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="invalid epochs 0"):
        TrainConfig(epochs=0)


def test_onecycle_schedule_peaks_at_40_percent() -> None:
    config = TrainConfig(lr=1.0)
    assert lr_at(config, 0.0) == 0.0 and lr_at(config, 0.4) == pytest.approx(1.0) and lr_at(config, 1.0) == 0.0
