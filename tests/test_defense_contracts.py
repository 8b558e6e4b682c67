"""Defense-layer contracts found by a review: tags that name one folder, one model per checkpoint name and threat,
frozen features (BatchNorm too), reusable recipes, finite parameters, the baseline not flagged, the guard's report,
the monitor's steps, suite accuracies in both card forms. Each test failed on the code before the fix."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import cli  # noqa: F401  (root group first)
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.defenses import get_defense
from robustbench_cnn.defenses.guard import OverfitGuard
from robustbench_cnn.defenses.train import defend
from robustbench_cnn.models import build_model
from robustbench_cnn.reporting.tradeoff import SUITE_ROBUST_KEY, record_suite_accuracy, tradeoff_table
from robustbench_cnn.store import read_card
from robustbench_cnn.training import TrainConfig, fit

torch.set_num_threads(1)
THREAT = ThreatModel.parse("linf:0.1")
QUICK = {"progress": False, "eval_n": 20, "eval_steps": 1}


# 1 --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["a/b", "../../x"])
def test_defend_refuses_a_tag_that_breaks_the_store_layout(tmp_path: Path, tag: str) -> None:
    """``--tag a/b`` saved the model three levels deep (invisible to list_checkpoints, rbc tradeoff and name
    lookup); ``--tag ../../x`` escaped into checkpoints/digits/x (another checkpoint's folder)."""
    with pytest.raises(ValueError, match="tag"):
        defend("standard", "fastcnn", "digits", THREAT, TrainConfig(epochs=1), store=tmp_path, tag=tag, **QUICK)
    assert not list(tmp_path.rglob("card.json"))


# 2 --------------------------------------------------------------------------------------------------
def test_defending_at_a_second_threat_does_not_silently_replace_the_first(tmp_path: Path) -> None:
    config = TrainConfig(epochs=1)
    defend("pgd-at", "fastcnn", "digits", "linf:0.1", config, store=tmp_path, steps=1, **QUICK)
    with pytest.raises(ValueError, match="already holds a model trained at linf:0.1; pass a tag"):
        defend("pgd-at", "fastcnn", "digits", "linf:0.05", config, store=tmp_path, steps=1, **QUICK)
    defend("pgd-at", "fastcnn", "digits", "linf:0.05", config, store=tmp_path, steps=1, tag="eps005", **QUICK)
    assert sorted(tradeoff_table(tmp_path)["threat"]) == ["linf:0.05", "linf:0.1"]


# 3 --------------------------------------------------------------------------------------------------
def test_freeze_features_keeps_batchnorm_statistics_frozen() -> None:
    """``freeze="features"`` trains only the head; the frozen body's BatchNorm running statistics are part of the
    features (they set its eval-mode output) and must not drift."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("4.")}
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g) * 0.5 + 0.3, torch.randint(0, 3, (32,), generator=g)
    fit(model, x, y, TrainConfig(epochs=1, batch_size=16, freeze="features", device="cpu"), progress=False)
    after = model.state_dict()
    assert [k for k, v in before.items() if not torch.equal(v, after[k])] == []


# 4 --------------------------------------------------------------------------------------------------
def test_a_reused_free_at_recipe_trains_like_a_fresh_one(tmp_path: Path) -> None:
    config = TrainConfig.for_dataset("digits", epochs=1)
    recipe = get_defense("free-at", THREAT, replays=2)
    first = defend(recipe, "fastcnn", "digits", THREAT, config, store=tmp_path / "a", **QUICK).model.state_dict()
    again = defend(recipe, "fastcnn", "digits", THREAT, config, store=tmp_path / "b", **QUICK).model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)  # same seed, same recipe: same weights


# 5 --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params",
    [
        ("trades", {"beta": math.inf}),
        ("mart", {"beta": math.inf}),
        ("pgd-at", {"alpha": math.inf}),
        ("fgsm-rs", {"guard_drop": math.inf}),
        ("fgsm-rs", {"guard_gap": math.inf}),
        ("trades", {"sigma": math.inf}),
    ],
)
def test_infinite_parameters_are_refused(name: str, params: dict) -> None:
    with pytest.raises(ValueError, match=f"invalid {next(iter(params))}"):
        get_defense(name, THREAT, **params)


# 6 --------------------------------------------------------------------------------------------------
def test_the_standard_baseline_is_not_flagged_as_failed_adversarial_training(tmp_path: Path) -> None:
    run = defend(
        "standard",
        "fastcnn",
        "digits",
        "linf:0.3",
        TrainConfig.for_dataset("digits", epochs=3),
        store=tmp_path,
        progress=False,
        eval_n=200,
        eval_steps=5,
    )
    assert run.pgd_accuracy < 0.05 and run.card.extra["monitor_clean_accuracy"] > 0.5  # the expected baseline
    assert run.card.extra["training_problems"] == []


# 7 --------------------------------------------------------------------------------------------------
def test_a_monitor_without_pgd_steps_is_refused(tmp_path: Path) -> None:
    # with 0 steps the monitor's "PGD accuracy" was the clean accuracy, reported as robustness
    with pytest.raises(ValueError, match="invalid eval_steps 0: must be >= 1"):
        defend(
            "standard",
            "fastcnn",
            "digits",
            THREAT,
            TrainConfig(epochs=1),
            store=tmp_path,
            progress=False,
            eval_n=50,
            eval_steps=0,
        )
    assert not list(tmp_path.rglob("card.json"))


# 8 --------------------------------------------------------------------------------------------------
def test_guard_does_not_report_a_gap_for_a_state_it_restored() -> None:
    torch.manual_seed(0)
    model = build_model("fastcnn", in_channels=1, num_classes=10, input_size=8)
    guard = OverfitGuard(THREAT, epochs=3, drop=0.2, gap=0.5)
    for epoch, (train_acc, pgd_acc) in enumerate([(0.5, 0.4), (0.8, 0.7), (0.95, 0.05)], start=1):
        guard.update(epoch, pgd_acc, model, train_accuracy=train_acc)
    assert guard.restored_epoch == 2
    assert [e["event"] for e in guard.events] == ["collapse", "restored"]  # not also "gap ... no restore can fix"


# 9 --------------------------------------------------------------------------------------------------
def test_recording_a_suite_accuracy_keeps_a_float_recorded_at_the_cards_threat(tmp_path: Path) -> None:
    run = defend("standard", "fastcnn", "digits", THREAT, TrainConfig(epochs=1), store=tmp_path, **QUICK)
    card = read_card(run.folder)
    card.extra[SUITE_ROBUST_KEY] = 0.42  # the documented float form: at the card's threat
    from robustbench_cnn.store import update_card

    update_card(run.folder, card)
    summary = pd.DataFrame(
        {
            "suite": ["standard"],
            "targeted": [False],
            "attack": ["worst-case"],
            "norm": ["linf"],
            "eps": [0.05],
            "robust_acc": [0.7],
            "n": [10],
            "seed": [0],
        }
    )
    record_suite_accuracy(run.folder, summary)
    assert tradeoff_table(tmp_path)["suite_robust_accuracy"].tolist() == [0.42]
