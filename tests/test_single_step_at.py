"""Issue 18: single-step AT that does not collapse (N-FGSM), recipe presets, and an honest end of training (the
monitor's masking probes, the end-of-training evaluation with the default cascade in the card and the trade-off
table, training events in the leaderboard's flags).

Digits (8x8), fastcnn, one thread, seeded; every run is a few epochs on the bundled data.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import cli  # noqa: F401  (the root group first)
from robustbench_cnn.commands.defend import defend_command, tradeoff_command
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses import DEFENSES, get_defense
from robustbench_cnn.defenses.masking import MaskingCheck, fgsm_probe
from robustbench_cnn.defenses.n_fgsm import NFGSM
from robustbench_cnn.defenses.perturb import pgd_robust
from robustbench_cnn.defenses.presets import Preset, apply_preset
from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE
from robustbench_cnn.pipeline.defend import square_probe
from robustbench_cnn.reporting.report import training_events
from robustbench_cnn.reporting.tradeoff import tradeoff_table
from robustbench_cnn.store import read_card
from robustbench_cnn.training import TrainConfig
from robustbench_cnn.workflows import train_model

MNIST = ThreatModel.parse("linf:0.3")


# --- N-FGSM ---------------------------------------------------------------------------------------------------


def test_n_fgsm_is_registered_single_step_with_the_papers_defaults() -> None:
    recipe = get_defense("n-fgsm", MNIST)
    assert recipe.single_step and DEFENSES.get("fgsm-rs").single_step and not DEFENSES.get("pgd-at").single_step
    assert recipe.p["noise"] == 2.0 and recipe.p["alpha"] == pytest.approx(0.3)  # k = 2 eps, step eps
    assert recipe.p["guard"] is True


def test_n_fgsm_points_reach_beyond_the_eps_ball_but_stay_in_noise_plus_step() -> None:
    """No clipping to the eps ball: the training points lie up to noise*eps + alpha away (inside [0, 1])."""
    import contextlib

    from robustbench_cnn.training import StepContext

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(64, 1, 8, 8) * 0.2 + 0.4  # away from the box, so [0, 1] clips nothing
    y = torch.randint(0, 10, (64,))
    recipe = get_defense("n-fgsm", "linf:0.1", guard=False)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    recipe.loss(model, x, y, StepContext(0, 0, 1, 0.1, torch.Generator().manual_seed(0), contextlib.nullcontext))
    dist = (seen[-1] - x).abs().flatten(1).amax(1)
    assert float(dist.max()) <= 0.3 + 1e-6  # 2 eps noise + eps step
    assert float(dist.min()) > 0.1 + 1e-3  # every point outside the eps ball: no projection onto it
    # noise 3 at linf 0.3 reaches 1.2 > 1: the balls are capped at 1 (all of [0, 1]), not refused
    big = get_defense("n-fgsm", "linf:0.3", noise=3.0, guard=False)
    ctx = StepContext(5, 0, 1, 0.1, torch.Generator().manual_seed(0), contextlib.nullcontext)
    assert torch.isfinite(big.loss(model, x, y, ctx))
    assert 0.0 <= float(seen[-1].min()) and float(seen[-1].max()) <= 1.0


# --- presets --------------------------------------------------------------------------------------------------


def test_presets_are_declared_per_dataset_and_norm_and_scale_step_sizes() -> None:
    fgsm = DEFENSES.get("fgsm-rs")
    applied = apply_preset(fgsm.presets, "mnist", MNIST, {}, {})
    assert applied.params == {"alpha": 0.375}  # Wong et al.'s MNIST step
    assert applied.train == {
        "epochs": 10,
        "lr": 5e-3,
        "optimizer": "adam",
        "batch_size": 100,
        "weight_decay": 0.0,
        "normalize": False,
    }
    smaller = apply_preset(fgsm.presets, "mnist", ThreatModel.parse("linf:0.1"), {}, {"lr": 1e-3})
    assert smaller.params["alpha"] == pytest.approx(0.125) and smaller.train["lr"] == 1e-3
    assert smaller.record["given"] == {"lr": 1e-3} and "lr" not in smaller.record["train"]
    pgd = apply_preset(DEFENSES.get("pgd-at").presets, "mnist", MNIST, {"steps": None}, {})
    assert pgd.params == {"steps": 40, "alpha": 0.01, "random_start": True, "eps_ramp": 2.0}  # Madry + a ramp
    assert apply_preset(DEFENSES.get("trades").presets, "mnist", MNIST, {}, {}).params["beta"] == 6.0
    none = apply_preset(NFGSM.presets, "digits", MNIST, {"noise": 1.0}, {})
    assert none.record["source"] is None and none.params == {"noise": 1.0} and "no published preset" in none.describe()
    with pytest.raises(ValueError, match="preset training settings"):
        Preset("x", train={"momentum": 0.9})


# --- the monitor's masking check --------------------------------------------------------------------------------


class _Quantised(nn.Module):
    """A planted masked model: the input is rounded to 1/4 steps first (zero gradient almost everywhere), so PGD
    and FGSM see no gradient while a gradient-free attack still breaks the net behind it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 4) / 4)


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    torch.set_num_threads(1)
    config = TrainConfig.for_dataset("digits", epochs=8, seed=0, device="cpu")
    store = tmp_path_factory.mktemp("net")
    return train_model("fastcnn", "digits", config, store=store, progress=False).model.eval()


def test_monitor_flags_a_planted_masked_model(digits_net: nn.Module) -> None:
    test = load_split("digits", "test", n=120)
    threat = ThreatModel.parse("linf:0.3")
    masked = _Quantised(digits_net)
    results = {}
    for name, model in (("masked", masked), ("plain", digits_net)):
        check = MaskingCheck({"fgsm": fgsm_probe, "square": square_probe(100)}, n=120)
        _, robust = pgd_robust(model, test.x, test.y, threat, steps=10, seed=0)
        worst, flagged = check(1, model, test.x, test.y, robust, threat, 0)
        results[name] = (float(robust.float().mean()), worst, flagged, check.events)
    pgd, worst, flagged, events = results["masked"]
    # measured (seed 0): PGD-10 leaves most points of the masked model robust, Square breaks nearly all of them
    assert flagged and any(e["probe"] == "square" for e in events), results
    assert pgd - worst > 0.3, results
    assert not results["plain"][2], results  # the same net unmasked: PGD already breaks what the probes break


# --- the end of training -------------------------------------------------------------------------------------


def test_defend_ends_with_the_default_cascade_in_the_card_tradeoff_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rbc defend`` at a planted digits preset: the preset is printed and recorded, the kept state is evaluated
    with the default cascade on held-out points, the card and ``rbc tradeoff`` carry that figure with n and CI."""
    monkeypatch.setattr(
        NFGSM,
        "presets",
        {("digits", "linf"): Preset("planted digits preset", params={"noise": 2.0}, train={"epochs": 3})},
    )
    store = tmp_path / "store"
    args = ["--defense", "n-fgsm", "-m", "fastcnn", "-d", "digits", "-t", "linf:0.1", "--device", "cpu"]
    args += ["--store", str(store), "--final-n", "60", "--eval-n", "60", "--no-progress", "-o", str(tmp_path / "run")]
    result = CliRunner().invoke(defend_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "preset (planted digits preset): noise=2.0, epochs=3" in result.output
    assert f"robust accuracy ({DEFAULT_CASCADE} cascade, linf:0.1, n=60 held-out test images)" in result.output
    card = read_card(store / "checkpoints" / "digits" / "fastcnn-n-fgsm")
    assert card.epochs == 3 and card.extra["preset"]["source"] == "planted digits preset"
    final = card.extra["final_eval"]
    assert final["cascade"] == DEFAULT_CASCADE and final["n"] == 60 and final["split"] == "test"
    lo, hi = final["ci95"]
    assert lo <= final["robust_accuracy"] <= hi and hi - lo > 0.05  # an exact CI on 60 points is wide
    assert (tmp_path / "run" / "summary.parquet").exists()
    row = tradeoff_table(store).iloc[0]
    assert row["robust_accuracy"] == pytest.approx(final["robust_accuracy"]) and row["robust_n"] == 60
    assert row["robust_ci_lo"] == pytest.approx(lo) and row["robust_cascade"] == DEFAULT_CASCADE
    result = CliRunner().invoke(tradeoff_command, ["--store", str(store), "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    shown = pd.read_csv(tmp_path / "t.csv").iloc[0]
    assert shown["robust_n"] == 60 and shown["robust_accuracy"] == pytest.approx(final["robust_accuracy"])


def test_training_events_reach_the_leaderboard_flags() -> None:
    class Card:
        extra = {
            "monitor_masking": {
                "events": [
                    {
                        "epoch": 4,
                        "probe": "square",
                        "n": 200,
                        "broken_beyond_pgd": 80,
                        "pgd_accuracy": 0.41,
                        "probe_accuracy": 0.03,
                    }
                ]
            },
            "final_eval": {
                "monitor_overstated": True,
                "monitor_pgd_accuracy": 0.41,
                "robust_accuracy": 0.034,
                "cascade": "standard",
                "n": 1000,
            },
        }

    events = dict(training_events({"m": Card()}, ["m"])["m"])
    assert "monitor-masking" in events and "epoch 4: probe square broke 80 of 200" in events["monitor-masking"]
    assert "monitor PGD 41.0% vs standard cascade 3.4% (n=1000)" == events["monitor-overstated"]
