"""Checkpoint store: round trip, safe loading, tampering, shape checks."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_cnn import load_model
from robustbench_cnn.core.errors import CheckpointError, ShapeMismatchError
from robustbench_cnn.models import build_model
from robustbench_cnn.store import (
    ModelCard,
    check_compatible,
    list_checkpoints,
    load_checkpoint,
    load_state_dict_file,
    save_checkpoint,
)


def _card(name: str = "digits/lenet5-standard") -> ModelCard:
    return ModelCard(
        name=name,
        arch="lenet5",
        arch_kwargs={},
        dataset="digits",
        input_shape=[1, 8, 8],
        num_classes=10,
        classes=[str(i) for i in range(10)],
        mean=[0.3],
        std=[0.4],
    )


def _saved(store):
    model = build_model("lenet5", in_channels=1, num_classes=10, input_size=8, mean=[0.3], std=[0.4]).eval()
    folder = save_checkpoint(model, _card(), store)
    return model, folder


def test_round_trip_by_name_gives_identical_logits(store) -> None:
    model, folder = _saved(store)
    assert (folder / "weights.safetensors").exists() and (folder / "card.json").exists()
    loaded = load_model("digits/lenet5-standard", device="cpu")
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model(x), loaded(x))
    card = json.loads((folder / "card.json").read_text())
    assert len(card["weights_sha256"]) == 64 and card["versions"]["torch"]
    assert [c.name for c in list_checkpoints()] == ["digits/lenet5-standard"]
    by_path, _ = load_checkpoint(folder)
    assert torch.equal(by_path(x), model(x))


def test_a_flipped_byte_is_refused(store) -> None:
    _, folder = _saved(store)
    weights = folder / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt or was modified: sha256"):
        load_checkpoint("digits/lenet5-standard")


def test_unknown_checkpoint_suggests_names(store) -> None:
    _saved(store)
    with pytest.raises(CheckpointError, match="Did you mean: digits/lenet5-standard"):
        load_checkpoint("digits/lenet5-standart")


def test_pickled_files_are_never_unpickled(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_state_dict_file(path)
    ok = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2)}, ok)
    assert torch.equal(load_state_dict_file(ok)["w"], torch.ones(2))


def test_channel_and_size_mismatch_are_clear() -> None:
    card = _card()
    with pytest.raises(ShapeMismatchError, match="expects 1-channel input, but dataset 'cifar10' has 3"):
        check_compatible(card, 3, 32, "cifar10")
    with pytest.raises(ShapeMismatchError, match="expects 8x8 images"):
        check_compatible(card, 1, 28, "mnist")


def test_the_same_weights_always_give_the_same_sha256(tmp_path) -> None:
    """weights_sha256 pins what a results cell evaluated (resume, Ray vs local): it must be a function of the
    weights. safetensors writes its metadata map in a random order, and two metadata keys gave one of two files
    for the same weights; eight saves in two orders each had 1 chance in 128 to agree by luck."""
    model = build_model("lenet5", in_channels=1, num_classes=10, input_size=8, mean=[0.3], std=[0.4]).eval()
    shas = {
        json.loads((save_checkpoint(model, _card(), tmp_path / f"s{i}") / "card.json").read_text())["weights_sha256"]
        for i in range(8)
    }
    assert len(shas) == 1
