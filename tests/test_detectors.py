"""Detectors (issue 19 part 2): registry contract, calibration to a false positive rate, BPDA squeezers, the
adaptive attack's threat model, and that adaptivity lowers detection-robust accuracy on a planted case; the
``detection`` cell, ``rbc detect`` and the leaderboard board. Digits, a LeNet-5 trained for 5 epochs (~2 s)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error
from click.testing import CliRunner
from scipy import ndimage

from cli import main
from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.errors import UnknownNameError
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.detectors import DETECTORS, get_detector
from robustbench_cnn.detectors.base import bpda
from robustbench_cnn.detectors.feature_squeezing import median_filter, reduce_bit_depth
from robustbench_cnn.evaluation.adaptive_detection import adaptive_attack
from robustbench_cnn.evaluation.detection import ADAPTIVE, DEFINITION, evaluate_detection

NAMES = ["feature-squeezing", "learned", "mahalanobis"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """A digits LeNet-5 in a module store, 300 training points with their PGD examples (linf 0.3), and the test
    split cut in two halves (calibration, held-out)."""
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    torch.manual_seed(0)
    store = tmp_path_factory.mktemp("store")
    trained = train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=5), store=store, progress=False)
    model = trained.model.eval()
    fit = load_split("digits", "train", n=300)
    adv = get_attack("pgd", steps=10)(model, fit.x, fit.y, ThreatModel(Norm.LINF, 0.3), seed=0)
    test = load_split("digits", "test")
    half = len(test) // 2
    return {
        "store": store,
        "name": trained.card.name,
        "model": model,
        "fit": (fit.x, fit.y, adv.x_adv[adv.success]),
        "calibration": test.x[:half],
        "held_out": (test.x[half:], test.y[half:]),
    }


def fitted(setup, name: str, fpr: float = 0.05):
    detector = get_detector(name, **({"epochs": 10} if name == "learned" else {}))
    x, y, x_adv = setup["fit"]
    detector.fit(setup["model"], x, y, x_adv, torch.Generator().manual_seed(0))
    detector.calibrate(setup["model"], setup["calibration"], fpr)
    return detector


def test_registry_lists_the_three_detectors_with_declared_properties() -> None:
    assert DETECTORS.list() == NAMES
    assert [DETECTORS.get(n).needs_adversarial for n in NAMES] == [False, True, False]
    assert [DETECTORS.get(n).bpda for n in NAMES] == [True, False, False]
    assert all(DETECTORS.get(n).paper for n in NAMES)
    with pytest.raises(UnknownNameError, match="feature-squeezing"):
        get_detector("feature-squeez")
    with pytest.raises(ValueError, match="accepted: bits, median"):
        get_detector("feature-squeezing", bit=3)
    with pytest.raises(ValueError, match="not calibrated"):
        get_detector("feature-squeezing").require_threshold()


@pytest.mark.parametrize("name", NAMES)
def test_calibrated_at_5_percent_flags_about_5_percent_of_held_out_clean_points(setup, name: str) -> None:
    detector = fitted(setup, name)
    n_cal = len(setup["calibration"])
    # on the calibration points: at most 5% flagged, and at least 5% - 1/n (the "higher" quantile, no ties)
    assert 0.05 - 1 / n_cal - 1e-9 <= detector.calibration_fpr <= 0.05
    x, _ = setup["held_out"]
    rate = float(detector.flag(setup["model"], x).float().mean())
    # On disjoint held-out points the flagged fraction is 0.05 up to the binomial error of the held-out n plus
    # that of the threshold estimated from n_cal points: sd = sqrt(p(1-p)(1/n_held + 1/n_cal)) (about 2.1 pp
    # here); 4 sd bound a two-sided miss to < 1e-4.
    sd = math.sqrt(0.05 * 0.95 * (1 / len(x) + 1 / n_cal))
    assert abs(rate - 0.05) <= 4 * sd, (rate, sd)
    scores = detector.scores(setup["model"], x[:7])
    assert scores.shape == (7,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("size", [2, 3])
def test_median_filter_matches_scipy(size: int) -> None:
    x = torch.rand(2, 3, 9, 8, generator=torch.Generator().manual_seed(size))
    ours = median_filter(x, size).numpy()
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    np.testing.assert_allclose(ours, ref, atol=0)


def test_bpda_is_the_exact_squeezer_forward_and_the_identity_backward() -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = bpda(x, lambda t: reduce_bit_depth(t, 1))
    assert torch.equal(y, reduce_bit_depth(x.detach(), 1))
    (y * torch.arange(64.0).view(1, 1, 8, 8)).sum().backward()
    assert torch.equal(x.grad, torch.arange(64.0).view(1, 1, 8, 8).expand(4, 1, 8, 8))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("threat", ["linf:0.2", "l2:1.0"])
def test_adaptive_attack_stays_in_the_ball_and_its_successes_are_real(setup, name: str, threat: str) -> None:
    detector = fitted(setup, name)
    x, y = setup["held_out"][0][:40], setup["held_out"][1][:40]
    tm = ThreatModel.parse_ball(threat)
    x_adv, won = adaptive_attack(setup["model"], detector, x, y, tm, steps=10, seed=0)
    delta = (x_adv - x).flatten(1)
    norms = delta.abs().amax(dim=1) if tm.norm is Norm.LINF else delta.norm(dim=1)
    assert (norms <= tm.eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    pred, flagged = detector.predict(setup["model"], x_adv)
    assert won.any()  # the attack found something, so the next check is not vacuous
    assert ((pred != y) & ~flagged)[won].all()


def test_adaptive_attack_lowers_detection_robust_accuracy_on_a_planted_case(setup) -> None:
    """Planted: the learned detector is trained on PGD examples at the evaluated eps, so plain PGD is caught; the
    joint attack must evade it and drop detection-robust accuracy below the non-adaptive figure."""
    x, y = setup["held_out"][0][:60], setup["held_out"][1][:60]
    fx, fy, _ = setup["fit"]
    ev = evaluate_detection(
        setup["model"],
        [("learned", {"epochs": 10})],
        x,
        y,
        x_fit=fx,
        y_fit=fy,
        x_calibration=setup["calibration"],
        norm=Norm.LINF,
        eps_list=[0.3],
        attacks=("pgd",),
        adaptive_steps=20,
    )
    rows = {r["attack"]: r for r in ev.summary}
    assert set(rows) == {"pgd", ADAPTIVE}
    assert rows["pgd"]["tpr"] > 0.1 and rows["pgd"]["auc"] > 0.6  # the detector does catch plain PGD
    assert rows[ADAPTIVE]["robust_acc"] < rows["pgd"]["robust_acc"]
    assert rows[ADAPTIVE]["definition"] == DEFINITION and rows[ADAPTIVE]["worst_case_over"] == "pgd+adaptive"
    assert len(ev.samples) == 2 * len(y)


def test_detection_cell_through_rbc_detect_and_the_board(setup, tmp_path, monkeypatch) -> None:
    from robustbench_cnn.reporting.boards_extra import detection_board, read_run_table

    monkeypatch.setenv("RBC_HOME", str(setup["store"]))
    out = tmp_path / "run"
    args = ["detect", "-m", setup["name"], "--detector", "mahalanobis", "-e", "0.3", "-n", "20"]
    args += ["--fit-n", "200", "--calibration-n", "100", "--attacks", "fgsm", "--adaptive-steps", "5"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "fgsm (non-adaptive)" in result.output
    table = read_run_table(out, "detection")
    assert list(table["attack"]) == ["fgsm", ADAPTIVE] and table["n"].tolist() == [20, 20]
    assert len(read_run_table(out, "detection_samples")) == 40
    board = detection_board(table)
    assert len(board.rows) == 1 and board.rows[0]["plain"].startswith("fgsm ")
    assert any("non-adaptive" in header for _, header in board.columns)


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--detector", "mahalanobs"], "Did you mean: mahalanobis"),
        (["--detector", "learned", "-p", "depth=3"], "invalid parameter(s) depth"),
        (["--detector", "learned", "--attacks", "pgdd"], "unknown attack 'pgdd'"),
        (["--detector", "learned", "--fpr", "1.5"], "invalid --fpr"),
    ],
)
def test_rbc_detect_bad_input_is_one_line(setup, monkeypatch, extra: list[str], pattern: str) -> None:
    monkeypatch.setenv("RBC_HOME", str(setup["store"]))
    result = CliRunner().invoke(main, ["detect", "-m", setup["name"], "-e", "0.1", *extra])
    assert_one_line_error(result, pattern)


def test_adaptive_attack_averages_gradients_over_eot_samples_for_a_randomized_detector(setup) -> None:
    """A randomized detector (declared ``randomized``) gets ``eot_samples`` score evaluations per step; a
    deterministic one gets one."""
    from robustbench_cnn.detectors.base import Detector

    class Noisy(Detector):
        randomized = True

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def logits_and_score(self, model, x):
            self.calls += 1
            logits = model(x)
            return logits, logits.softmax(dim=1).amax(dim=1) + 0.01 * torch.randn(len(x))

    noisy = Noisy()
    noisy.threshold, noisy.scale = 2.0, 1.0  # never flags: the attack is the plain joint-margin PGD
    x, y = setup["held_out"][0][:5], setup["held_out"][1][:5]
    adaptive_attack(setup["model"], noisy, x, y, ThreatModel(Norm.LINF, 0.0), steps=3, eot_samples=4)
    assert noisy.calls == 3 * 4 + 1  # 3 steps x 4 draws, then the check of the last iterate
    Noisy.randomized = False
    noisy.calls = 0
    adaptive_attack(setup["model"], noisy, x, y, ThreatModel(Norm.LINF, 0.0), steps=3, eot_samples=4)
    assert noisy.calls == 3 + 1


def test_consensus_attack_on_the_squeezed_views_stays_in_the_ball_and_needs_views(setup) -> None:
    detector = fitted(setup, "feature-squeezing")
    x, y = setup["held_out"][0][:40], setup["held_out"][1][:40]
    tm = ThreatModel(Norm.LINF, 0.3)
    x_adv, won = adaptive_attack(setup["model"], detector, x, y, tm, steps=10, loss="consensus", seed=0)
    assert (x_adv - x).abs().amax() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    pred, flagged = detector.predict(setup["model"], x_adv)
    assert won.any() and ((pred != y) & ~flagged)[won].all()
    with pytest.raises(ValueError, match="has none"):
        adaptive_attack(setup["model"], fitted(setup, "mahalanobis"), x, y, tm, loss="consensus")
    with pytest.raises(ValueError, match="invalid adaptive loss"):
        adaptive_attack(setup["model"], detector, x, y, tm, loss="weighted")


def test_a_plan_detection_table_gives_one_detection_cell_per_chosen_model() -> None:
    from robustbench_cnn.core.errors import RbcError
    from robustbench_cnn.pipeline.plan import parse_plan

    base = {"datasets": ["digits"], "threat": {"norm": "linf", "eps": [0, 0.1, 0.3]}}
    base["models"] = [{"arch": "lenet5"}, {"arch": "mlp"}]
    plan = parse_plan({**base, "detection": {"models": ["lenet5-standard"], "n": 50, "adaptive_steps": 10}})
    cells = [c for c in plan.cells() if c.kind == "detection"]
    assert len(cells) == 1 and cells[0].model == "digits/lenet5-standard" and cells[0].n == 50
    assert cells[0].params["eps"] == [0.1, 0.3] and [d for d, _ in cells[0].params["detectors"]] == NAMES
    with pytest.raises(UnknownNameError, match="Did you mean: mahalanobis"):
        parse_plan({**base, "detection": {"detectors": ["mahalanobs"]}})
    with pytest.raises(RbcError, match="detection"):
        parse_plan({**base, "detection": {"fprr": 0.1}})
