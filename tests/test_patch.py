"""Universal adversarial patches (issue 19 part 3): the ``patch:AREA`` threat, the attack's mask contract, one patch
shared by all images, success growing with the area, targeted success against the target, the EOT placement, and
the ``patch`` cell, command and board. Digits (1 x 8 x 8) and a tiny trained net; patches learned in few steps."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
import torch
from attack_fixtures import digits, trained_model
from cli_helpers import assert_one_line_error
from click.testing import CliRunner

from cli import main
from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.patch import UNTARGETED
from robustbench_cnn.attacks.patch_transforms import EotRanges, eot_apply, paste, random_positions
from robustbench_cnn.core.patch_threat import PatchThreat
from robustbench_cnn.core.statistics import proportion_ci
from robustbench_cnn.core.types import ThreatModel

#: one start (restarts are checked below); enough to separate the sizes on digits (measured: untargeted test success 0.7% / 27.4% / 77.8% of 288 attacked
#: points at 0.05 / 0.2 / 0.5 with these settings, seed 0), a fraction of the default 300 x 64
FAST = {"steps": 40, "batch": 32, "restarts": 1}
SIZES = (0.05, 0.2, 0.5)


@functools.cache
def _fitted(area: float, target: int | None) -> tuple[object, torch.Tensor]:
    """A patch attack fitted on the digits training split (seed 0) and its patch, cached per process."""
    x_train, y_train, _, _ = digits()
    attack = get_attack("patch", **FAST)
    patch = attack.fit(trained_model(), x_train, y_train, PatchThreat(area), target=target, seed=0)
    return attack, patch


def _on_test(area: float, target: int | None, seed: int = 1):
    attack, _ = _fitted(area, target)
    _, _, x, y = digits()
    targets = None if target is None else torch.full_like(y, target)
    return attack(trained_model(), x, y, PatchThreat(area), targets=targets, seed=seed), x, y


# ------------------------------------------------------------------------------------------------ the threat


def test_patch_threat_is_parsed_by_the_one_parser() -> None:
    assert ThreatModel.parse("patch:0.1") == PatchThreat(0.1)
    assert ThreatModel.parse(" PATCH:10% ") == PatchThreat(0.1) == ThreatModel.parse("patch:1/10")
    assert str(PatchThreat(0.1)) == "patch:0.1"
    assert PatchThreat(0.1).side(28, 28) == 8 and PatchThreat(0.2).side(28, 28) == 12  # 64 <= 78.4, 144 <= 156.8
    assert PatchThreat(0.05).side(28, 28) == 6 and PatchThreat(1.0).side(28, 28) == 28
    assert PatchThreat(0.1).covered(28, 28) == 64 / 784 <= 0.1
    assert [t.area for t in PatchThreat.parse_sizes("patch", "0.2, 0.05,0.1,0.1")] == [0.05, 0.1, 0.2]
    assert PatchThreat.parse_sizes("patch:0.3") == [PatchThreat(0.3)]
    for bad, match in [
        ("patch:1.5", "invalid patch area '1.5'"),
        ("patch:-0.1", "invalid patch area '-0.1'"),
        ("patch:abc", "invalid patch area 'abc'"),
        ("patch:1/0", "invalid patch area '1/0'"),
        ("patch", "invalid patch threat 'patch': use patch:AREA"),
    ]:
        with pytest.raises(ValueError, match=match):
            ThreatModel.parse(bad)
    with pytest.raises(ValueError, match="a patch threat takes no epsilon"):
        ThreatModel.parse("patch:0.1", eps=0.1)
    with pytest.raises(ValueError, match="this needs a norm ball"):
        ThreatModel.parse_ball("patch:0.1")
    with pytest.raises(ValueError, match="a patch must cover more than 0"):
        PatchThreat.parse_sizes("patch", "0,0.1")


# ------------------------------------------------------------------------------------------------ the attack


def test_pixels_change_only_inside_the_mask_and_the_patch_is_one_tensor_for_all_images() -> None:
    res, x, _ = _on_test(0.2, None)
    _, patch = _fitted(0.2, None)
    side = PatchThreat(0.2).side(8, 8)
    assert patch.shape == (1, side, side) and patch.min() >= 0 and patch.max() <= 1
    changed = (res.x_adv != x).any(dim=1, keepdim=True)
    assert changed.any() and not (changed & ~res.mask).any()  # nothing changes outside the mask
    attacked = res.clean_correct.nonzero().flatten()
    assert res.mask[attacked].flatten(1).sum(dim=1).eq(side * side).all()
    # every attacked image carries exactly the one learned patch inside its mask, at various positions
    windows = torch.stack([res.x_adv[i][res.mask[i].expand_as(x[i])].view(1, side, side) for i in attacked])
    assert torch.equal(windows, patch.expand_as(windows))
    corners = {tuple(res.mask[i, 0].nonzero()[0].tolist()) for i in attacked}
    assert len(corners) > 10  # random placements (36 possible corners on 8 x 8 for a 3 x 3 patch)
    again, _, _ = _on_test(0.2, None)
    assert torch.equal(again.x_adv, res.x_adv)  # seeded placements
    other, _, _ = _on_test(0.2, None, seed=2)
    assert not torch.equal(other.mask, res.mask)


def test_success_grows_with_patch_area() -> None:
    rates = []
    for area in SIZES:
        res, _, _ = _on_test(area, None)
        k, n = int(res.success.sum()), int(res.attacked.sum())
        rates.append((k / n, *proportion_ci(k, n)))
    # tolerance: the 95% Clopper-Pearson intervals of consecutive sizes must not overlap (measured: [0.1, 2.5]%,
    # [22.4, 33.0]%, [72.5, 82.4]% on 288 attacked points; the gaps between them are 20+ points)
    for (_, _, hi_small), (_, lo_large, _) in zip(rates, rates[1:]):
        assert lo_large > hi_small, rates


def test_targeted_success_is_measured_against_the_target() -> None:
    target = 3
    res, _, y = _on_test(0.5, target)
    assert (res.target == target).all()
    assert torch.equal(res.success, res.clean_correct & (y != target) & (res.pred_adv == target))
    assert not res.mask[y == target].any()  # a point of the target class is not attacked
    k, n = int(res.success.sum()), int(res.attacked.sum())
    assert n == int((res.clean_correct & (y != target)).sum())
    # the targeted patch reaches class 3 far more often than the untargeted patch of the same size sends points
    # there (measured: 90 of 263 = 34.2% [28.5, 40.3] against 10 = 3.8% [1.8, 6.9]); tolerance: the 95%
    # intervals must not overlap
    untargeted, _, _ = _on_test(0.5, None)
    k_u = int((untargeted.success & (untargeted.pred_adv == target) & (y != target)).sum())
    assert proportion_ci(k, n)[0] > proportion_ci(k_u, n)[1], (k, k_u, n)


def test_a_call_without_fit_learns_one_patch_per_target_on_its_own_points() -> None:
    _, _, x, y = digits()
    x, y = x[:40], y[:40]
    attack = get_attack("patch", steps=5, batch=8)
    targets = torch.where(torch.arange(40) % 2 == 0, 1, 7)
    res = attack(trained_model(), x, y, PatchThreat(0.2), targets=targets, seed=0)
    side = PatchThreat(0.2).side(8, 8)
    for target in (1, 7):
        rows = (res.clean_correct & (y != target) & (targets == target)).nonzero().flatten()
        windows = torch.stack([res.x_adv[i][res.mask[i].expand_as(x[i])] for i in rows])
        assert torch.equal(windows, windows[:1].expand_as(windows))  # one patch per target class
    assert attack.patches == {}  # nothing fitted is kept from a call
    assert set(attack._call_patches) == {(side, 1), (side, 7)}


def test_restarts_keep_the_patch_that_fools_the_most_training_images(monkeypatch: pytest.MonkeyPatch) -> None:
    x_train, y_train, _, _ = digits()
    x, y = x_train[:64], y_train[:64]
    attack = get_attack("patch", steps=1, batch=8, restarts=3)
    starts = iter(torch.full((1, 3, 3), v) for v in (0.1, 0.9, 0.5))
    scores = {0.1: 2, 0.9: 9, 0.5: 5}  # successes of each start on the training images
    monkeypatch.setattr(attack, "_optimise", lambda *args: next(starts))
    monkeypatch.setattr(
        attack, "_successes", lambda model, x, y, patch, target, gen: scores[round(float(patch[0, 0, 0]), 1)]
    )
    best = attack.fit(trained_model(), x, y, PatchThreat(0.2), seed=0)
    assert torch.equal(best, torch.full((1, 3, 3), 0.9))
    # the real scoring: untargeted successes are the points whose prediction leaves the label
    real = get_attack("patch", steps=1, restarts=1)
    model, gen = trained_model(), torch.Generator().manual_seed(0)
    hits = real._successes(model, x, y, torch.zeros(1, 3, 3), UNTARGETED, gen)
    gen.manual_seed(0)
    top, left = random_positions(64, 3, 8, 8, gen, x.device)
    with torch.no_grad():
        pred = model(paste(x, torch.zeros(1, 3, 3), top, left)[0]).argmax(dim=1)
    assert hits == int((pred != y).sum())


def test_fit_checks_its_inputs() -> None:
    x_train, y_train, _, _ = digits()
    attack = get_attack("patch", steps=1)
    with pytest.raises(ValueError, match=r"invalid target 10: the model has classes 0 to 9"):
        attack.fit(trained_model(), x_train[:8], y_train[:8], PatchThreat(0.2), target=10)
    with pytest.raises(ValueError, match="a patch to learn needs an area > 0"):
        attack.fit(trained_model(), x_train[:8], y_train[:8], PatchThreat(0.0))
    with pytest.raises(ValueError, match="invalid scale/contrast"):
        get_attack("patch", scale=1.5)
    with pytest.raises(ValueError, match="invalid steps 0"):
        get_attack("patch", steps=0)


# ------------------------------------------------------------------------------------------------ placement


def test_eot_placement_matches_paste_without_transformation_and_keeps_the_area() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=gen)
    full = torch.rand(3, 8, 8, generator=gen)
    still = EotRanges(0.0, 0.0, 0.0, 0.0, 0.0)
    pasted, mask = paste(x, full, torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long))
    assert mask.all() and torch.allclose(eot_apply(x, full, still, gen), pasted, atol=1e-5)
    small = torch.rand(3, 3, 3, generator=gen, requires_grad=True)
    zeros = torch.zeros_like(x)
    out = eot_apply(zeros, torch.ones(3, 3, 3), still, gen)  # a white patch on black: its coverage
    assert torch.allclose(out[:, 0].sum(dim=(1, 2)), torch.full((6,), 9.0), atol=1e-4)  # area kept
    moved = eot_apply(x, small, EotRanges(), gen)
    assert moved.min() >= 0 and moved.max() <= 1
    moved.sum().backward()
    assert small.grad is not None and small.grad.abs().sum() > 0  # differentiable in the patch
    top, left = random_positions(500, 3, 8, 8, gen, x.device)
    assert top.min() == 0 and top.max() == 5 and left.min() == 0 and left.max() == 5


# ------------------------------------------------------------------------------------------------ cell, CLI, board


def _saved_lenet(store, name: str = "digits/lenet5-standard") -> None:
    """An untrained LeNet-5 checkpoint for digits (plumbing only: no test here needs accuracy)."""
    from robustbench_cnn.models import build_model
    from robustbench_cnn.store import ModelCard, save_checkpoint

    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, num_classes=10, input_size=8, mean=[0.3], std=[0.4]).eval()
    card = ModelCard(
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
    save_checkpoint(model, card, store)


def run(*args: str):
    return CliRunner().invoke(main, ["--threads", "1", *args])


def test_rbc_patch_writes_the_tables_figures_and_the_board(store, tmp_path) -> None:
    _saved_lenet(store)
    out = tmp_path / "run"
    args = ["patch", "-m", "digits/lenet5-standard", "--threat", "patch", "--sizes", "0.2,0.5", "--target", "none,3"]
    args += ["-n", "20", "--train-n", "40", "-p", "steps=2", "-p", "batch=8", "-o", str(out), "--no-progress"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "success % per target class and patch size" in result.output
    table = pd.read_parquet(out / "patch.parquet")
    assert len(table) == 4 and set(table["target"]) == {-1, 3} and set(table["area"]) == {0.2, 0.5}
    assert table["run_id"].notna().all() and (table["n"] == 20).all() and (table["train_n"] == 40).all()
    assert sorted(table["side"]) == [3, 3, 5, 5]  # floor(sqrt(0.2 * 64)), floor(sqrt(0.5 * 64))
    samples = pd.read_parquet(out / "patch_samples.parquet")
    assert len(samples) == 4 * 20
    assert (out / "patch_curve.png").stat().st_size > 0 and (out / "patches.png").stat().st_size > 0
    # resumable: the same command with --resume reuses the cell
    again = run(*args[:-3], "-o", str(out), "--resume", "--no-progress")
    assert again.exit_code == 0, again.output
    assert len(pd.read_parquet(out / "patch.parquet")) == 4
    report = run("report", str(out))
    assert report.exit_code == 0, report.output
    board = (out / "leaderboard.md").read_text()
    assert "## Adversarial patches" in board and "success % at patch:0.5 [95% CI]" in board


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threat", "patch:1.5"], "invalid patch area '1.5'"),
        (["--threat", "linf:0.1"], "invalid patch threat 'linf:0.1'"),
        (["--sizes", "0.1,x"], "invalid patch area 'x'"),
        (["--target", "12"], "invalid --target '12': use none (untargeted), a class 0 to 9"),
        (["--placements", "0"], "invalid --placements 0"),
        (["-p", "stepz=3"], "invalid parameter(s) stepz for attack 'patch'"),
        (["--threat", "patch:0.01"], "not one pixel of a 8 x 8 image"),
    ],
)
def test_rbc_patch_bad_input_is_one_line(store, tmp_path, extra, message) -> None:
    _saved_lenet(store)
    result = run("patch", "-m", "digits/lenet5-standard", "-n", "8", "--train-n", "8", "-p", "steps=1", *extra)
    assert_one_line_error(result, message)


def test_rbc_attack_points_a_patch_threat_to_rbc_patch(store, tmp_path) -> None:
    _saved_lenet(store)
    result = run("attack", "-m", "digits/lenet5-standard", "--threat", "patch:0.1", "-n", "8")
    assert_one_line_error(result, "'patch:0.1' is a patch threat: evaluate patches with rbc patch --threat patch:0.1")
    result = run("attack", "-a", "patch", "-m", "digits/lenet5-standard", "--threat", "linf:0.1", "-n", "8")
    assert_one_line_error(result, "attack 'patch' is a patch attack: evaluate it with rbc patch --threat patch:AREA")


def test_the_patch_board_ranks_untargeted_rows_first() -> None:
    from robustbench_cnn.reporting.boards_extra import patch_board

    rows = []
    for model, rate in (("a", 0.6), ("b", 0.2)):
        for target in (UNTARGETED, 3):
            for area in (0.1, 0.2):
                rows.append(
                    {
                        "model": model,
                        "target": target,
                        "area": area,
                        "success_rate": rate * area * 5,
                        "success_lo": 0.0,
                        "success_hi": 1.0,
                        "clean_acc": 0.9,
                        "n": 100,
                        "placements": 1,
                        "train_n": 500,
                    }
                )
    board = patch_board(pd.DataFrame(rows))
    assert [(r["model"], r["target"]) for r in board.rows] == [
        ("b", "untargeted"),
        ("a", "untargeted"),
        ("b", "3"),
        ("a", "3"),
    ]
    assert board.rows[0]["a0.2"] == "20.0 [0.0, 100.0]"
