"""Common corruptions (CIFAR-10-C, MNIST-C): the generator's contract, the threat spelling, the evaluation.

Contract checks run on images every machine has: scikit-learn's digits upsampled to 28 x 28 (grey) and 32 x 32
crops of its bundled photograph (colour). The severity ordering is checked on real MNIST / CIFAR-10 test images
(skipped when ``RBC_DATA_DIR`` lacks them).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attack_fixtures import held_out, trained_model

from robustbench_cnn.core.corruption_threat import CorruptionThreat
from robustbench_cnn.core.errors import UnknownNameError
from robustbench_cnn.corruptions import (
    CORRUPTIONS,
    benchmark_cells,
    benchmark_corruptions,
    corrupt,
    resolve_threat,
)
from robustbench_cnn.evaluation.corruptions import evaluate_corruptions

#: corruptions that draw no random numbers (the seed changes nothing)
NO_RANDOMNESS = {
    "defocus_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "scale",
    "stripe",
    "canny_edges",
}


@functools.cache
def grey_images() -> torch.Tensor:
    """8 of scikit-learn's digits, bilinearly upsampled to 1 x 28 x 28 (white strokes on black, as MNIST)."""
    from sklearn.datasets import load_digits

    digits = torch.tensor(load_digits().images[:8], dtype=torch.float32).unsqueeze(1) / 16.0
    return F.interpolate(digits, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)


@functools.cache
def colour_images() -> torch.Tensor:
    """8 crops of scikit-learn's bundled photograph, 3 x 32 x 32 (64 x 64 pixels averaged 2 x 2)."""
    from sklearn.datasets import load_sample_image

    photo = torch.tensor(load_sample_image("china.jpg"), dtype=torch.float32).permute(2, 0, 1) / 255.0
    crops = [photo[:, 40 * i : 40 * i + 64, 70 * i : 70 * i + 64] for i in range(8)]
    return F.avg_pool2d(torch.stack(crops), 2)


IMAGES = {1: grey_images, 3: colour_images}
CASES = [pytest.param(name, channels, id=f"{name}-{channels}ch") for name in CORRUPTIONS.list() for channels in (1, 3)]


@pytest.mark.parametrize("name, channels", CASES)
def test_corruption_contract(name: str, channels: int) -> None:
    x = IMAGES[channels]()
    x0 = x.clone()
    levels = CORRUPTIONS.get(name).severities(None, channels)
    for severity in range(1, levels + 1):
        out = corrupt(x, name, severity, seed=7)
        assert torch.equal(x, x0), "the input must not be modified"
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(torch.round(out * 255), out * 255), "8-bit values, as the published sets"
        assert (out - x).abs().mean() > 1e-3, f"severity {severity} must change the images"
        assert torch.equal(corrupt(x, name, severity, seed=7), out), "same seed, same corruption"
        other = corrupt(x, name, severity, seed=8)
        if name in NO_RANDOMNESS:
            assert torch.equal(other, out)
        else:
            assert not torch.equal(other, out), "a random corruption must follow its seed"
    # each image's corruption depends on its index, not on the batch it is in
    part = corrupt(x[3:6], name, levels, seed=7, indices=[3, 4, 5])
    assert torch.equal(part, corrupt(x, name, levels, seed=7)[3:6])


#: (benchmark, corruption) -> the severity pairs (s, s + 1) whose mean absolute change does not grow, and why
#: (the same pairs on these 40 test images and on 100, see docs/corruptions.md).
NOT_INCREASING = {
    # the random affine jitter, the largest pixel change, shrinks (2.56 -> 0.96 px) as the elastic field grows
    ("cifar10-c", "elastic_transform"): {1, 2, 3, 4},
    ("mnist-c", "elastic_transform"): {1, 2, 3, 4},  # CIFAR-10-C's constants (not an MNIST-C corruption)
    # the image weight drops (0.9 -> 0.85 -> 0.75) while the frost weight barely rises (0.4 -> 0.4 -> 0.45): the
    # image is darkened under the same frost rather than covered more
    ("cifar10-c", "frost"): {3, 4},
    ("mnist-c", "frost"): {3},
    # the blur sigma is 0.05, 0.25, 0.4, 0.25, 0.4: below 0.3 it moves no 8-bit value (1 -> 2 equal), and a
    # larger one smooths the 1-pixel swaps back (2 -> 3 and 4 -> 5 lower)
    ("cifar10-c", "glass_blur"): {1, 2, 4},
    # severities 3 and 4 share sigma 2: the extra taps of radius 8 weigh exp(-49/8) ~ 0.2%, the same blur
    ("cifar10-c", "motion_blur"): {3},
    # kernels of 31 and 41 taps on 28-pixel digits: the blur has saturated
    ("mnist-c", "motion_blur"): {4},
    # severities 4-5 switch to smaller blobs (blur sigma 1 instead of 4..2) with a wider soft edge
    ("mnist-c", "spatter"): {3},
    ("cifar10-c", "spatter"): {3},  # MNIST-C's constants (not a CIFAR-10-C corruption)
}


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("dataset, benchmark", [("mnist", "mnist-c"), ("imagefolder:cifar10-jpeg", "cifar10-c")])
def test_severity_orders_the_mean_absolute_change(dataset: str, benchmark: str) -> None:
    from robustbench_cnn.core.errors import DataNotFoundError
    from robustbench_cnn.data import load_split

    try:
        split = load_split(dataset, "test", n=40)
    except DataNotFoundError:
        pytest.skip(f"{dataset} not under RBC_DATA_DIR")
    checked = 0
    for name in CORRUPTIONS.list():
        corruption = CORRUPTIONS.get(name)
        _, table = corruption.table(benchmark, split.x.shape[1])
        if len(table) == 1:
            continue
        change = [
            float((corrupt(split.x, name, s, seed=0, benchmark=benchmark, indices=split.index) - split.x).abs().mean())
            for s in range(1, len(table) + 1)
        ]
        flat = {s for s in range(1, len(table)) if not change[s] > change[s - 1]}
        assert flat == NOT_INCREASING.get((benchmark, name), set()), (name, [round(c, 4) for c in change])
        checked += 1
    assert checked == 20


def test_benchmarks_list_their_fifteen_corruptions() -> None:
    cifar, mnist = benchmark_corruptions("cifar10-c"), benchmark_corruptions("mnist-c")
    assert len(cifar) == len(set(cifar)) == 15 and len(mnist) == len(set(mnist)) == 15
    assert set(cifar) | set(mnist) <= set(CORRUPTIONS.list())
    assert len(benchmark_cells("cifar10-c")) == 75  # RobustBench: 15 corruptions x 5 severities
    mnist_cells = benchmark_cells("mnist-c")
    assert len(mnist_cells) == 15 and ("fog", 5) in mnist_cells and ("glass_blur", 1) in mnist_cells
    assert ("stripe", 1) in mnist_cells and len(benchmark_cells("mnist-c", all_severities=True)) == 11 * 5 + 4
    assert CORRUPTIONS.get("fog").params["cifar10-c"][0] != CORRUPTIONS.get("fog").params["mnist-c"][0]
    with pytest.raises(ValueError, match="invalid corruption benchmark 'imagenet-c'"):
        benchmark_corruptions("imagenet-c")


@pytest.mark.parametrize(
    "text, name, severity",
    [
        ("corruption:fog:3", "fog", 3),
        ("corruption:fog", "fog", None),
        ("Corruption:Gaussian-Noise:5", "gaussian_noise", 5),
        ("corruptions", "all", None),
        ("corruptions:2", "all", 2),
    ],
)
def test_corruption_threat_parses(text: str, name: str, severity: int | None) -> None:
    threat = CorruptionThreat.parse(text)
    assert (threat.name, threat.severity) == (name, severity)
    assert CorruptionThreat.parse(str(threat)) == threat


@pytest.mark.parametrize(
    "text",
    ["corruption", "corruption:fog:0", "corruption:fog:6", "corruption:fog:x", "corruption:all", "linf:0.3", "fog:3"],
)
def test_corruption_threat_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid corruption threat .*use corruption:NAME:SEVERITY"):
        CorruptionThreat.parse(text)


def test_threat_resolves_to_cells_and_names_are_checked() -> None:
    assert resolve_threat("corruption:fog:3", "cifar10-c") == [("fog", 3)]
    assert resolve_threat("corruption:fog", "mnist-c") == [("fog", s) for s in range(1, 6)]
    assert resolve_threat("corruptions", "mnist-c") == benchmark_cells("mnist-c")
    assert len(resolve_threat("corruptions:2", "cifar10-c")) == 15
    with pytest.raises(UnknownNameError, match="Did you mean: fog"):
        resolve_threat("corruption:fogg:1", "cifar10-c")
    with pytest.raises(ValueError, match=r"invalid severity 2 for corruption 'stripe': use 1"):
        resolve_threat("corruption:stripe:2", "mnist-c")


def test_bad_input_is_refused() -> None:
    x = grey_images()
    with pytest.raises(ValueError, match=r"invalid severity 6 for corruption 'fog': use 1 to 5"):
        corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        corrupt(torch.zeros(2, 2, 8, 8), "fog", 1)
    with pytest.raises(ValueError, match=r"float tensor in \[0, 1\]"):
        corrupt((x * 255).to(torch.uint8), "fog", 1)
    with pytest.raises(ValueError, match="one entry per image"):
        corrupt(x, "fog", 1, indices=[0, 1])
    with pytest.raises(UnknownNameError):
        corrupt(x, "snowy", 1)


def test_evaluation_per_cell_and_mean() -> None:
    model = trained_model()
    x, y = held_out(40)
    ev = evaluate_corruptions(model, x, y, "corruptions", seed=1)
    assert ev.benchmark == "mnist-c" and ev.is_benchmark_mean and len(ev.cells) == 15
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert ev.clean_accuracy == clean
    # each cell is the accuracy on the corrupted images, the mean their plain average
    fog = next(c for c in ev.cells if c["corruption"] == "fog")
    with torch.no_grad():
        by_hand = float((model(corrupt(x, "fog", 5, seed=1)).argmax(1) == y).float().mean())
    assert fog["severity"] == 5 and fog["accuracy"] == by_hand
    assert ev.mean_accuracy == pytest.approx(np.mean([c["accuracy"] for c in ev.cells]))
    rows = ev.records({"model": "tiny"})
    assert len(rows) == 16 and rows[-1]["corruption"] == "mean" and rows[-1]["benchmark_mean"]
    assert all(r["model"] == "tiny" and r["n"] == 40 for r in rows)
    one = evaluate_corruptions(model, x, y, CorruptionThreat("fog", 5), seed=1)
    assert [c["accuracy"] for c in one.cells] == [by_hand] and not one.is_benchmark_mean


def test_a_split_is_corrupted_by_dataset_index() -> None:
    from robustbench_cnn.corruptions import corrupt_split
    from robustbench_cnn.data import load_split

    split = load_split("digits", "test", n=6)
    out = corrupt_split(split, "shot_noise", 3, seed=2)
    assert torch.equal(out, corrupt(split.x, "shot_noise", 3, seed=2, indices=split.index))
    assert not torch.equal(out, corrupt(split.x, "shot_noise", 3, seed=2)), "indices, not positions, seed images"
