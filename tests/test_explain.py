"""``rbc explain`` (issue 19, part 1): attribution maps of clean vs adversarial predictions (captum), Grad-CAM on the
layer every architecture declares, the attribution shift, the ``explain`` cell kind, its board and the CLI's PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import assert_one_line_error
from click.testing import CliRunner
from torch import nn

from cli import main
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.evaluation.explain import (
    METHODS,
    AttributionConfig,
    attribution_maps,
    explain,
    rank_correlation,
    top_k_intersection,
)
from robustbench_cnn.models import MODELS, build_model, gradcam_layer_name, gradcam_module

FAST = {"ig_steps": 8}  # the maps' contract does not depend on the number of IG steps; 8 keeps the tests fast
CONFIGS = ((1, 8), (3, 32), (1, 28), (3, 16))  # (channels, side): each architecture gets two neighbours (1 and 3
# channels), and every configuration is covered by several architectures


def _arch_configs() -> list[tuple[str, int, int]]:
    archs = MODELS.list()
    return [(a, *CONFIGS[(i + j) % len(CONFIGS)]) for i, a in enumerate(archs) for j in (0, 1)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, str]:
    """A LeNet-5 trained 2 epochs on digits (about 85% clean accuracy) in its own store: (name, store)."""
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    store = str(tmp_path_factory.mktemp("explain-store"))
    torch.manual_seed(0)
    train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=2), store=store, progress=False)
    return "digits/lenet5-standard", store


@pytest.fixture(scope="module")
def digits_model(trained):
    from robustbench_cnn.data import load_split
    from robustbench_cnn.workflows import load_for_dataset

    name, store = trained
    model, _ = load_for_dataset(name, "digits", torch.device("cpu"), store, None)
    split = load_split("digits", "test", n=6)
    return model, split.x, split.y


def _last_conv(net: nn.Module) -> nn.Module | None:
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


@pytest.mark.parametrize(("arch", "channels", "side"), _arch_configs())
def test_gradcam_works_for_every_registered_architecture(arch: str, channels: int, side: int) -> None:
    """The declared layer is the last convolution or a block ending in it; Grad-CAM through captum gives an
    input-sized, finite, non-negative map, and the layer is on the path to the logit (its raw CAM is not 0)."""
    from captum.attr import LayerGradCam

    kwargs = {"depth": 10, "widen_factor": 1} if arch == "wide_resnet" else {}  # WRN-10-1: same "layers" path
    model = build_model(arch, in_channels=channels, num_classes=10, input_size=side, **kwargs).eval()
    layer, last = gradcam_module(model, arch, side), _last_conv(model.net)
    if last is None:  # the MLP: no convolution, and it declares none
        assert layer is None and gradcam_layer_name(arch, side) is None
        return
    if arch == "ensemble":  # one last convolution per member: it declares none, and Grad-CAM is skipped
        assert layer is None and gradcam_layer_name(arch, side) is None
        return
    assert layer is last or any(m is last for m in layer.modules()), gradcam_layer_name(arch, side)
    x = torch.rand(2, channels, side, side)
    cam = attribution_maps(model, x, torch.tensor([0, 1]), "gradcam", gradcam_layer=layer)
    assert cam.shape == (2, side, side) and torch.isfinite(cam).all() and (cam >= 0).all()
    raw = LayerGradCam(model, layer).attribute(x.requires_grad_(True), target=0, relu_attributions=False)
    assert raw.detach().abs().sum() > 0


@pytest.mark.parametrize("side", [8, 16, 28, 32, 64])
def test_the_vgg_gradcam_layer_follows_the_dropped_pools(side: int) -> None:
    """VGG drops max-pools on small inputs, so its last convolution moves: the declared path follows it."""
    with torch.device("meta"):  # structure only: no weights initialised
        model = build_model("vgg11_bn", in_channels=1, num_classes=10, input_size=side)
    assert gradcam_module(model, "vgg11_bn", side) is _last_conv(model.net)


def test_attributions_have_the_input_shape_and_are_deterministic_for_a_seed(digits_model) -> None:
    model, x, y = digits_model
    layer = gradcam_module(model, "lenet5", 8)
    threat = ThreatModel.parse("linf:0.3")
    runs = [
        explain(model, x, y, threat, "pgd", {"steps": 5}, gradcam_layer=layer, config=AttributionConfig(**FAST), seed=s)
        for s in (3, 3, 4)
    ]
    first, again, other = runs
    assert first.attacked.any() and first.success.any()  # the trained model is attacked and broken
    assert first.methods == list(METHODS)
    for method in METHODS:
        for clean, adv in (first.maps[method],):
            assert clean.shape == adv.shape == (len(x), 8, 8)
            assert torch.isfinite(clean).all() and (clean >= 0).all() and clean.abs().sum() > 0
        torch.testing.assert_close(first.maps[method][1], again.maps[method][1], rtol=0, atol=0)
        np.testing.assert_array_equal(first.spearman[method], again.spearman[method])
        attacked = first.attacked.numpy()
        assert np.isnan(first.spearman[method][~attacked]).all()  # not attacked: no shift
        assert np.all(np.abs(first.spearman[method][attacked]) <= 1)
    assert not torch.equal(first.x_adv, other.x_adv)  # the seed reaches the attack's random start


def test_shift_measures_on_known_maps() -> None:
    a = torch.arange(16.0).reshape(1, 4, 4).repeat(3, 1, 1)
    b = torch.stack([a[0], -a[0], a[0].flip(0)])  # same ranks, reversed ranks, rows swapped
    rho = rank_correlation(a, b)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0) and -1 < rho[2] < 1
    inter = top_k_intersection(a, b, k=4)
    assert inter[0] == 1.0 and inter[1] == 0.0  # the 4 largest pixels: the same ones, then none
    assert inter[2] == 0.0  # the top row's pixels moved to the bottom row
    assert np.isnan(rank_correlation(torch.zeros(1, 4, 4), a[:1])[0])  # a constant map has no ranks


def test_a_network_without_convolutions_skips_gradcam_only() -> None:
    model = build_model("mlp", in_channels=1, num_classes=10, input_size=8)
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    e = explain(model, x, y, ThreatModel.parse("linf:0.1"), "fgsm", config=AttributionConfig(**FAST))
    assert e.skipped == ["gradcam"] and e.methods == ["saliency", "integrated-gradients", "occlusion"]


def test_the_cell_writes_the_shift_table_and_the_board_shows_it(trained, tmp_path) -> None:
    from robustbench_cnn.pipeline.cells import explain_cell
    from robustbench_cnn.pipeline.runner import run_cells
    from robustbench_cnn.reporting.boards_extra import extra_boards

    name, store = trained
    cell = explain_cell(
        name, "digits", "linf:0.3", "pgd", attack_params={"steps": 5}, config=FAST, grid_rows=2, n=5, store=store
    )
    run = run_cells([cell], tmp_path / "run", progress=False)
    samples = pd.read_parquet(run.dir / "explain_samples.parquet")
    assert len(samples) == 5 * len(METHODS) and samples["run_id"].eq(run.run_id).all()
    assert set(samples["method"]) == set(METHODS) and (samples["model"] == name).all()
    attacked = samples[samples["attacked"]]
    assert (
        len(attacked)
        and attacked["spearman"].between(-1, 1).all()
        and attacked["top_k_intersection"].between(0, 1).all()
    )
    assert samples.loc[~samples["attacked"], "spearman"].isna().all()
    maps = pd.read_parquet(run.dir / "explain_maps.parquet")
    assert len(maps) == 2 * (2 + 2 * len(METHODS))  # 2 points x (x, x_adv, clean and adv map per method)
    board = next(b for b in extra_boards(run.dir) if b.slug == "attribution-shift")
    assert [r["method"] for r in board.rows] == list(METHODS) and board.rows[0]["model"] == name


def test_the_cli_writes_the_png_grid(trained, tmp_path) -> None:
    name, store = trained
    out = tmp_path / "run"
    args = ["explain", "-m", name, "--store", store, "-n", "3", "--ig-steps", "8", "-p", "steps=5", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "-o", str(out), "--target", "next"])
    assert result.exit_code == 0, result.output
    png = out / "explain_digits__lenet5-standard.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "median Spearman" in result.output
    samples = pd.read_parquet(out / "explain_samples.parquet")
    assert (samples["target_policy"] == "next").all() and (samples["target"] == (samples["label"] + 1) % 10).all()


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--threat", "corruption:fog"], "explain needs a norm ball"),
        (["--methods", "saliency,lime"], "invalid --methods"),
        (["--methods", "gradcma"], "did you mean gradcam?"),
        (["--target", "all"], "not a per-point target"),
        (["--top-k", "0"], "invalid --top-k"),
        (["-a", "pgdd"], "pgd"),
        (["-a", "deepfool", "--target", "next"], "does not support targets"),
    ],
)
def test_bad_input_is_one_line(trained, tmp_path, extra, pattern) -> None:
    name, store = trained
    result = CliRunner().invoke(main, ["explain", "-m", name, "--store", store, "-o", str(tmp_path / "r"), *extra])
    assert_one_line_error(result, pattern)


def test_a_plan_emits_explain_cells_after_training(tmp_path) -> None:
    from robustbench_cnn.core.errors import RbcError
    from robustbench_cnn.pipeline.plan import load_plan, parse_plan

    base = {
        "datasets": ["digits"],
        "threat": {"norm": "linf", "eps": [0.0, 0.2]},
        "models": [{"arch": "lenet5"}, {"arch": "fastcnn", "recipe": "pgd-at", "threat": "linf:0.2"}],
        "explain": {"models": ["fastcnn-pgd-at"], "params": {"steps": 5}, "target": "next", "n": 10},
    }
    cells = parse_plan(base).cells(store=tmp_path / "store")
    explained = [c for c in cells if c.kind == "explain"]
    train = next(c for c in cells if c.kind == "defense-train" and c.model == "digits/fastcnn-pgd-at")
    assert [c.model for c in explained] == ["digits/fastcnn-pgd-at"] and explained[0].after == (train.ref,)
    assert explained[0].params["threat"] == "linf:0.2"  # default: the plan's norm at its largest epsilon
    assert explained[0].params["target_policy"] == "next" and explained[0].n == 10
    for bad, message in (
        ({"explain": {"attak": "pgd"}}, "did you mean 'attack'"),
        ({"explain": {"methods": ["lime"]}}, "invalid --methods"),
        ({"explain": {"threat": "corruptions"}}, "explain needs a norm ball"),
    ):
        with pytest.raises(RbcError, match=message):
            parse_plan({**base, **bad})
    mnist = load_plan("mnist")
    kinds = [c.kind for c in mnist.cells(store=tmp_path / "store")]
    assert kinds.count("explain") == len(mnist.models)
