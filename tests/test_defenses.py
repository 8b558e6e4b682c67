"""Defenses: recipe contracts, robustness gains over standard training, the overfitting guard, the
per-epoch and store-wide trade-off tables, and ``rbc defend`` / ``rbc tradeoff``.

Everything trains fastcnn on the bundled digits (8x8) at linf 0.1 for a few epochs, seeded, one thread.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import cli  # noqa: F401  (the root group first: cli_defend attaches its commands to it)
from robustbench_cnn.commands.defend import DEFENSE_NAMES, defend_command, tradeoff_command
from robustbench_cnn.core.errors import UnknownNameError
from robustbench_cnn.core.geometry import project, random_start
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.defenses import DEFENSES, Defense, get_defense
from robustbench_cnn.defenses.guard import OverfitGuard
from robustbench_cnn.defenses.perturb import ce_objective, kl_objective, perturb, pgd_accuracy
from robustbench_cnn.defenses.train import EPOCH_COLUMNS, TRADEOFF_FILE, DefendedModel, defend, training_problems
from robustbench_cnn.models import build_model
from robustbench_cnn.reporting.tradeoff import SUITE_ROBUST_KEY, TRADEOFF_COLUMNS, tradeoff_table, write_tradeoff_table
from robustbench_cnn.store import load_checkpoint, read_card, save_checkpoint
from robustbench_cnn.training import StepContext, TrainConfig
from robustbench_cnn.workflows import train_model

THREAT = ThreatModel.parse("linf:0.1")
EPOCHS = 5
#: Fewer inner steps than the defaults keep the whole file fast; the defaults are checked in test_params.
FAST_PARAMS = {"pgd-at": {"steps": 3}, "trades": {"steps": 3}, "mart": {"steps": 3}, "free-at": {"replays": 4}}
ADVERSARIAL = [name for name in DEFENSES.list() if name != "standard"]


@pytest.fixture(scope="module")
def defended(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, DefendedModel]]:
    """Every registered defense trained once (same model, data, seed, threat) into one store."""
    store = tmp_path_factory.mktemp("defended")
    config = TrainConfig.for_dataset("digits", epochs=EPOCHS)
    runs = {
        name: defend(
            name, "fastcnn", "digits", THREAT, config, store=store, progress=False, **FAST_PARAMS.get(name, {})
        )
        for name in DEFENSES.list()
    }
    return store, runs


def _ctx(seed: int = 0) -> StepContext:
    import contextlib

    generator = torch.Generator().manual_seed(seed)
    return StepContext(0, 0, 1, 0.1, generator, contextlib.nullcontext, indices=torch.arange(16), train_size=16)


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("fastcnn", in_channels=1, num_classes=10, input_size=8)
    g = torch.Generator().manual_seed(seed)
    return model, torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


# --- registry and parameters ------------------------------------------------------------------------


def test_registry_lists_every_defense_once_and_cli_help_matches() -> None:
    assert DEFENSES.list() == sorted(DEFENSE_NAMES)
    assert {"pgd-at", "fgsm-rs", "trades", "mart"} <= set(DEFENSES.list())


def test_unknown_defense_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown defense 'pgd'\. Did you mean: pgd-at\?"):
        get_defense("pgd", THREAT)


@pytest.mark.parametrize(
    "name, params, message",
    [
        (
            "pgd-at",
            {"beta": 6},
            r"invalid parameter\(s\) beta for defense 'pgd-at': accepted: alpha, eps_ramp, random_start, steps",
        ),
        ("pgd-at", {"steps": 0}, r"invalid steps 0 for defense 'pgd-at': must be an integer > 0"),
        ("trades", {"alpha": -0.1}, r"invalid alpha -0.1 for defense 'trades': must be a number > 0"),
        ("fgsm-rs", {"guard_drop": "big"}, r"invalid guard_drop 'big' for defense 'fgsm-rs'"),
        (
            "fgsm-rs",
            {"clip_start": "maybe"},
            r"invalid clip_start 'maybe' for defense 'fgsm-rs': must be true or false",
        ),
        ("pgd-at", {"random_start": 2}, r"invalid random_start 2 for defense 'pgd-at': must be true or false"),
    ],
)
def test_invalid_parameters_are_named(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_defense(name, THREAT, **params)


def test_unsupported_norm_is_refused() -> None:
    with pytest.raises(ValueError, match=r"defense 'trades' does not support norm l1: use linf or l2"):
        get_defense("trades", "l1:5")


def test_params_resolve_the_papers_defaults() -> None:
    mnist = ThreatModel.parse("linf:0.3")
    assert get_defense("pgd-at", mnist).params() == {
        "threat": "linf:0.3",
        "steps": 10,
        "alpha": pytest.approx(0.075),
        "random_start": True,
        "eps_ramp": 0.0,
    }
    assert get_defense("fgsm-rs", mnist).params()["alpha"] == pytest.approx(0.375)  # Wong et al.'s MNIST step
    assert get_defense("trades", mnist).params()["beta"] == 6.0
    assert get_defense("mart", mnist).params()["alpha"] == pytest.approx(0.075)
    assert get_defense("free-at", mnist).params()["alpha"] == pytest.approx(0.3)
    assert get_defense("pgd-at", mnist, alpha=None, steps=None).params()["steps"] == 10  # None = default


# --- the recipe contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEFENSES.list())
@pytest.mark.parametrize("threat", ["linf:0.1", "l2:0.5"])
def test_recipe_contract(name: str, threat: str) -> None:
    """A finite scalar loss with parameter gradients, inputs untouched, seeded, JSON-serialisable params."""
    model, x, y = _tiny()
    x0, y0 = x.clone(), y.clone()
    recipe = get_defense(name, threat)
    assert isinstance(recipe, Defense) and recipe.name == name
    loss = recipe.loss(model, x, y, _ctx())
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    if name != "free-at":  # free-at replays batches, so the loop's labels do not match its logits
        assert recipe.last_logits is not None and recipe.last_logits.shape == (16, 10)
        assert not recipe.last_logits.requires_grad
    json.dumps(recipe.params())
    again = get_defense(name, threat).loss(model, x, y, _ctx())
    assert torch.equal(loss.detach(), again.detach())  # randomness only from ctx.generator


@pytest.mark.parametrize("threat", ["linf:0.1", "l2:0.5"])
@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
def test_perturb_stays_in_the_ball_and_the_box(threat: str, start: str) -> None:
    model, x, y = _tiny()
    tm = ThreatModel.parse(threat)
    g = torch.Generator().manual_seed(0)
    x_adv = perturb(model, x, tm, ce_objective(y), steps=3, alpha=tm.eps / 2, generator=g, start=start)
    assert tm.norm.measure(x_adv - x).max() <= tm.eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not x_adv.requires_grad
    assert all(p.grad is None for p in model.parameters())  # the inner maximisation leaves weights alone
    start_point = random_start(x, tm, torch.Generator().manual_seed(0), start)
    assert torch.equal(project(start_point, x, tm), project(project(start_point, x, tm), x, tm))
    with torch.no_grad():
        ref = model(x)
    kl = kl_objective(ref)(model(x_adv))
    assert kl.shape == (16,) and (kl >= -1e-6).all()


def test_perturb_increases_the_objective() -> None:
    model, x, y = _tiny()
    g = torch.Generator().manual_seed(0)
    x_adv = perturb(model, x, THREAT, ce_objective(y), steps=5, alpha=0.025, generator=g, start="none")
    with torch.no_grad():
        assert ce_objective(y)(model(x_adv)).mean() > ce_objective(y)(model(x)).mean()


@pytest.mark.parametrize("threat", ["linf:0.3", "l2:1.0"])
def test_unclipped_start_takes_the_first_gradient_outside_the_box_and_returns_inside(threat: str) -> None:
    """Wong et al.'s FGSM-RS: the gradient is taken at x + delta as drawn (pixels may leave [0, 1]); the
    training example itself is projected onto the ball and the box."""
    model, x, y = _tiny()
    x = x.clone()
    x[:, :, :2] = 0.0  # black rows: a start drawn around them must leave [0, 1] when not clipped
    tm = ThreatModel.parse(threat)
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        for clip in (True, False):
            g = torch.Generator().manual_seed(0)
            x_adv = perturb(model, x, tm, ce_objective(y), steps=1, alpha=1.25 * tm.eps, generator=g, clip_start=clip)
            assert tm.norm.measure(x_adv - x).max() <= tm.eps + 1e-5
            assert x_adv.min() >= 0 and x_adv.max() <= 1
    finally:
        hook.remove()
    clipped, unclipped = seen
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert unclipped.min() < 0  # the gradient point left the box
    assert tm.norm.measure(unclipped - x).max() <= tm.eps + 1e-5  # ... but not the ball
    with pytest.raises(ValueError, match="unclipped start"):
        perturb(model, x, tm, ce_objective(y), steps=1, alpha=0.1, generator=torch.Generator(), y=y, clip_start=False)


def test_fgsm_rs_takes_its_gradient_at_the_unclipped_start_by_default() -> None:
    assert get_defense("fgsm-rs", THREAT).params()["clip_start"] is False
    assert get_defense("fgsm-rs", THREAT, clip_start=True).params()["clip_start"] is True


@pytest.mark.parametrize(
    "text, value",
    [
        ("False", False),
        ("false", False),
        ("no", False),
        ("0", False),
        ("True", True),
        ("yes", True),
        (1, True),
        (0, False),
    ],
)
def test_boolean_parameters_from_the_command_line_mean_what_they_say(text, value) -> None:
    """``--defense-arg clip_start=False`` arrives as the string 'False' (not JSON): it must not count as true."""
    assert get_defense("fgsm-rs", THREAT, clip_start=text, guard=text).params()["clip_start"] is value
    assert get_defense("pgd-at", THREAT, random_start=text).params()["random_start"] is value


def test_unknown_start_is_refused() -> None:
    model, x, y = _tiny()
    with pytest.raises(ValueError, match=r"invalid start 'gauss': use one of uniform, normal, none"):
        perturb(model, x, THREAT, ce_objective(y), steps=1, alpha=0.1, generator=torch.Generator(), start="gauss")


# --- training: every defense beats standard training on PGD accuracy -------------------------------


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_defense_raises_pgd_accuracy_over_standard(defended, name: str) -> None:
    _, runs = defended
    standard, run = runs["standard"], runs[name]
    assert run.clean_accuracy > 0.85, f"{name} lost too much clean accuracy: {run.clean_accuracy:.3f}"
    assert run.pgd_accuracy >= standard.pgd_accuracy + 0.1, (
        f"{name}: PGD accuracy {run.pgd_accuracy:.3f} vs standard {standard.pgd_accuracy:.3f}"
    )


def test_card_names_defense_threat_and_monitor(defended) -> None:
    _, runs = defended
    for name, run in runs.items():
        card = read_card(run.folder)
        assert card.recipe == name and card.threat == "linf:0.1" and card.epochs == EPOCHS
        assert card.hyperparameters["threat"] == "linf:0.1"
        assert card.extra["defense"] == name
        assert card.extra["pgd_accuracy"] == pytest.approx(run.pgd_accuracy)
        assert card.extra["pgd_monitor"]["steps"] == 10 and card.extra["pgd_monitor"]["n"] == 450
        model, _ = load_checkpoint(run.folder)  # the re-saved card still matches the weights
        for a, b in zip(model.state_dict().values(), run.model.state_dict().values()):
            assert torch.equal(a, b)
    assert "guard" in runs["fgsm-rs"].card.extra["defense_report"]


def test_per_epoch_table_is_written_beside_the_checkpoint(defended) -> None:
    _, runs = defended
    run = runs["pgd-at"]
    table = pd.read_parquet(run.folder / TRADEOFF_FILE)
    assert list(table.columns) == list(EPOCH_COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in EPOCH_COLUMNS.items()
    }
    assert table["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert (table["defense"] == "pgd-at").all() and (table["threat"] == "linf:0.1").all()
    assert table["pgd_accuracy"].between(0, 1).all() and (table["pgd_accuracy"] <= table["clean_accuracy"]).all()
    assert table["guard_pgd_accuracy"].isna().all()
    assert runs["fgsm-rs"].epochs["guard_pgd_accuracy"].notna().all()


def test_monitor_agrees_with_the_pgd_attack(defended) -> None:
    """The training-time monitor and the evaluation attack (attacks.pgd) measure the same thing."""
    import robustbench_cnn.attacks as attacks
    from robustbench_cnn.data import load_split

    _, runs = defended
    test = load_split("digits", "test")
    for name in ("standard", "pgd-at"):
        model = runs[name].model.eval()
        _, ours = pgd_accuracy(model, test.x, test.y, THREAT, steps=10)
        theirs = attacks.get_attack("pgd", steps=10, abs_stepsize=0.025)(model, test.x, test.y, THREAT).robust_accuracy
        assert ours == pytest.approx(theirs, abs=0.04), name


def test_defend_refuses_a_recipe_for_another_threat(tmp_path: Path) -> None:
    recipe = get_defense("pgd-at", "linf:0.2")
    with pytest.raises(ValueError, match=r"defense 'pgd-at' was built for linf:0.2, not linf:0.1"):
        defend(recipe, "fastcnn", "digits", THREAT, TrainConfig(epochs=1), store=tmp_path, progress=False)


# --- the catastrophic-overfitting guard -------------------------------------------------------------


def _guard_run(accuracies: list[float]) -> tuple[OverfitGuard, torch.nn.Module, dict[int, dict]]:
    """Feed the guard fabricated accuracies; the model's weights are changed after every epoch."""
    model, _, _ = _tiny()
    guard = OverfitGuard(THREAT, epochs=len(accuracies), drop=0.2)
    states = {}
    for epoch, acc in enumerate(accuracies, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        guard.update(epoch, acc, model)
    return guard, model, states


def test_guard_restores_the_best_state_after_a_collapse() -> None:
    guard, model, states = _guard_run([0.40, 0.55, 0.70, 0.20, 0.05])
    assert guard.fired and guard.restored_epoch == 3
    assert guard.events == [
        {"event": "collapse", "epoch": 4, "best_epoch": 3, "before": 0.70, "after": 0.20},
        {"event": "restored", "epoch": 5, "best_epoch": 3, "before": 0.05, "after": 0.70},
    ]
    assert all(torch.equal(v, states[3][k]) for k, v in model.state_dict().items())


def test_guard_flags_a_gap_between_training_and_pgd_accuracy() -> None:
    """Overfitting from the start: FGSM training accuracy high, PGD accuracy never rose (no drop to see);
    flagged after the last epoch only (an early gap often heals: FGSM-RS on MNIST shows one for 4 epochs)."""
    model, _, _ = _tiny()
    guard = OverfitGuard(THREAT, epochs=3)
    for epoch, (train_acc, pgd_acc) in enumerate([(0.3, 0.05), (0.72, 0.01), (0.95, 0.0)], start=1):
        guard.update(epoch, pgd_acc, model, train_accuracy=train_acc)
    assert guard.fired and guard.restored_epoch is None
    assert guard.events == [{"event": "gap", "epoch": 3, "best_epoch": 1, "before": 0.95, "after": 0.0}]
    json.dumps(guard.report(), allow_nan=False)


@pytest.mark.parametrize(
    "accuracies, fired",
    [
        ([0.4, 0.5, 0.35, 0.6], False),  # a dip of 0.15 < drop
        ([0.4, 0.7, 0.2, 0.65], True),  # collapses at epoch 3, recovers by the end
    ],
)
def test_guard_keeps_the_final_state_without_a_lasting_collapse(accuracies: list[float], fired: bool) -> None:
    guard, model, states = _guard_run(accuracies)
    assert guard.restored_epoch is None and guard.fired == fired
    assert all(torch.equal(v, states[len(accuracies)][k]) for k, v in model.state_dict().items())


def test_guard_fires_on_a_planted_collapse(defended, tmp_path: Path) -> None:
    """Planted: the robust PGD-AT model fine-tuned with plain FGSM (no random start) under a one-cycle
    learning rate peaking at 10x the digits default. Its PGD accuracy collapses mid-run (a learning-rate
    blow-up, not catastrophic overfitting proper, which digits does not show within seconds); the guard
    records the collapse and restores the best epoch, and the saved weights are the restored ones."""
    _, runs = defended
    config = TrainConfig.for_dataset("digits", epochs=10, lr=0.5)
    run = defend(
        "fgsm-rs",
        "fastcnn",
        "digits",
        THREAT,
        config,
        store=tmp_path,
        progress=False,
        eval_n=100,
        eval_steps=5,
        init_from=str(runs["pgd-at"].folder),
        random_start=False,
        guard_n=128,
        guard_steps=5,
    )  # the plant is calibrated for a 5-step check: with 10 its final drop is 0.195 < 0.2
    report = run.report["guard"]
    assert report["fired"], report["history"]
    collapse = next(e for e in run.guard_events if e["event"] == "collapse")
    restored = run.guard_events[-1]
    assert collapse["event"] == "collapse" and collapse["before"] - collapse["after"] > 0.2
    assert restored["event"] == "restored" and restored["epoch"] == 10
    assert report["restored_epoch"] == restored["best_epoch"] < collapse["epoch"]
    assert run.card.extra["defense_report"]["guard"]["events"] == run.guard_events
    table = run.epochs
    assert table["guard_restored"].tolist() == [False] * 9 + [True]
    # the monitor's last row measures the restored (saved) model: back near the best epoch's accuracy
    best = int(restored["best_epoch"])
    assert table["pgd_accuracy"].iloc[-1] > table["pgd_accuracy"].iloc[-2] + 0.15
    assert table["pgd_accuracy"].iloc[-1] == pytest.approx(table["pgd_accuracy"].iloc[best - 1], abs=0.05)
    # the trade-off table says when the kept state is from
    row = tradeoff_table(tmp_path).iloc[0]
    assert bool(row["guard_fired"]) and row["guard_restored_epoch"] == best
    saved, _ = load_checkpoint(run.folder)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), run.model.state_dict().values()))


# --- the store-wide trade-off table -----------------------------------------------------------------


def test_tradeoff_table_has_one_row_per_defended_model(defended, tmp_path: Path) -> None:
    store, runs = defended
    train_model("fastcnn", "digits", TrainConfig(epochs=1), store=store, tag="plain", progress=False)  # no threat
    table = tradeoff_table(store)
    assert list(table.columns) == list(TRADEOFF_COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in TRADEOFF_COLUMNS.items()
    }
    assert sorted(table["defense"]) == sorted(runs) and len(table) == len(runs)
    row = table.set_index("defense").loc["pgd-at"]
    assert row["architecture"] == "fastcnn" and row["dataset"] == "digits" and row["threat"] == "linf:0.1"
    assert row["epochs"] == EPOCHS and row["pgd_steps"] == 10 and row["pgd_n"] == 450
    assert row["pgd_accuracy"] == pytest.approx(runs["pgd-at"].pgd_accuracy)
    assert math.isnan(row["suite_robust_accuracy"]) and pd.isna(row["guard_fired"])
    assert table.set_index("defense").loc["fgsm-rs", "guard_fired"] in (True, False)

    out = write_tradeoff_table(store, tmp_path / "tradeoff.parquet")
    assert pd.read_parquet(tmp_path / "tradeoff.parquet").dtypes.equals(out.dtypes)


def test_tradeoff_table_reads_the_suite_accuracy_an_evaluation_recorded(tmp_path: Path, defended) -> None:
    _, runs = defended
    run = runs["trades"]
    card = read_card(run.folder)
    card.extra[SUITE_ROBUST_KEY] = {"linf:0.1": 0.5, "linf:0.2": 0.1}
    save_checkpoint(run.model, card, tmp_path, directory=tmp_path / "checkpoints" / card.name)
    assert tradeoff_table(tmp_path)["suite_robust_accuracy"].tolist() == [0.5]


def test_suite_accuracy_is_recorded_under_the_cards_threat_for_fractional_epsilons(tmp_path: Path, defended) -> None:
    """A summary's eps 8/255 is the float 0.0313...; the card says linf:8/255: both name one entry."""
    from robustbench_cnn.reporting.tradeoff import record_suite_accuracy

    _, runs = defended
    card = read_card(runs["trades"].folder)
    card.threat = "linf:8/255"
    folder = save_checkpoint(runs["trades"].model, card, tmp_path, directory=tmp_path / "checkpoints" / card.name)
    summary = pd.DataFrame(
        {
            "suite": ["standard"],
            "targeted": [False],
            "attack": ["worst-case"],
            "norm": ["linf"],
            "eps": [8 / 255],
            "robust_acc": [0.42],
            "n": [10],
            "seed": [0],
        }
    )
    assert record_suite_accuracy(folder, summary) == {"linf:8/255": 0.42}
    assert tradeoff_table(tmp_path)["suite_robust_accuracy"].tolist() == [0.42]


def test_rbc_evaluate_standard_records_the_suite_accuracy_for_the_tradeoff_table(tmp_path: Path, defended) -> None:
    """``rbc evaluate --suite standard`` on a defended checkpoint writes its worst-case robust accuracy into the
    card, and the trade-off table shows the same figure as the run's summary table; the weights are untouched."""
    import shutil

    _, runs = defended
    run = runs["pgd-at"]
    name = read_card(run.folder).name
    shutil.copytree(run.folder, tmp_path / "checkpoints" / name)
    out_dir = tmp_path / "run"
    args = [
        "evaluate",
        "--model",
        name,
        "--dataset",
        "digits",
        "--threat",
        "linf",
        "--eps",
        "0.05,0.1",
        "-n",
        "12",
        "--store",
        str(tmp_path),
        "--out",
        str(out_dir),
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "recorded the cascade's robust accuracy" in result.output  # the default cascade (fast) records too
    summary = pd.read_parquet(out_dir / "summary.parquet")
    worst = summary[summary["attack"] == "worst-case"].set_index("eps")["robust_acc"]
    card = read_card(tmp_path / "checkpoints" / name)
    assert card.extra[SUITE_ROBUST_KEY] == {"linf:0.05": worst[0.05], "linf:0.1": worst[0.1]}
    assert tradeoff_table(tmp_path)["suite_robust_accuracy"].tolist() == [worst[0.1]]  # the card's threat, 0.1
    load_checkpoint(tmp_path / "checkpoints" / name)  # sha256 still matches the card


def test_pgd_at_epsilon_ramp_grows_the_ball_linearly() -> None:
    import contextlib

    recipe = get_defense("pgd-at", "linf:0.3", eps_ramp=2)
    gen = torch.Generator().manual_seed(0)

    def at(epoch, step):
        return recipe.ramped_threat(StepContext(epoch, step, 100, 0.1, gen, contextlib.nullcontext), 2)

    assert at(0, 49)[1] == pytest.approx(0.25) and at(0, 49)[0].eps == pytest.approx(0.075)
    assert at(1, 99)[1] == 1.0 and at(3, 0)[0].eps == pytest.approx(0.3)
    assert recipe.ramped_threat(StepContext(0, 0, 100, 0.1, gen, contextlib.nullcontext), 0)[0].eps == 0.3
    # the ramped step stays inside the ramped ball
    model, x, y = _tiny()
    ctx = StepContext(0, 0, 4, 0.1, gen, contextlib.nullcontext)
    captured = {}
    original = recipe.adversarial_ce

    def spy(*args, **kwargs):
        captured.update(kwargs)
        return original(*args, **kwargs)

    recipe.adversarial_ce = spy
    recipe.loss(model, x, y, ctx)
    assert captured["threat"].eps == pytest.approx(0.3 / 8) and captured["alpha"] == pytest.approx(0.075 / 8)
    with pytest.raises(ValueError, match="eps_ramp"):
        get_defense("pgd-at", "linf:0.3", eps_ramp=-1)


def test_training_problems_name_a_stalled_or_unrobust_model(defended) -> None:
    stalled = pd.DataFrame({"clean_accuracy": [0.106, 0.106], "pgd_accuracy": [0.106, 0.106]})  # PGD-AT, MNIST 0.3
    overfit = pd.DataFrame({"clean_accuracy": [0.9, 0.98], "pgd_accuracy": [0.2, 0.001]})
    healthy = pd.DataFrame({"clean_accuracy": [0.9, 0.98], "pgd_accuracy": [0.5, 0.85]})
    assert "did not learn" in training_problems(stalled, 0.1)[0]
    assert "no robustness" in training_problems(overfit, 0.1)[0]
    assert training_problems(healthy, 0.1) == []
    _, runs = defended  # every defense trained here learned something, and its card says so
    assert all(run.card.extra["training_problems"] == [] for run in runs.values())


def test_tradeoff_table_of_an_empty_store(tmp_path: Path) -> None:
    table = tradeoff_table(tmp_path)
    assert table.empty and list(table.columns) == list(TRADEOFF_COLUMNS)


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_defend_writes_a_checkpoint_naming_defense_and_threat(tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = [
        "--defense",
        "fgsm-rs",
        "--model",
        "fastcnn",
        "--dataset",
        "digits",
        "--threat",
        "linf:0.1",
        "--epochs",
        "2",
        "--alpha",
        "1/8",
        "--eval-n",
        "100",
        "--eval-steps",
        "3",
        "--store",
        str(store),
        "--device",
        "cpu",
        "--seed",
        "1",
        "--no-progress",
        "--final-n",
        "0",  # the end-of-training evaluation is tested in test_single_step_at.py
    ]
    result = CliRunner().invoke(defend_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    card = read_card(store / "checkpoints" / "digits" / "fastcnn-fgsm-rs")
    assert card.recipe == "fgsm-rs" and card.threat == "linf:0.1" and card.seed == 1
    assert card.hyperparameters["alpha"] == 0.125 and card.extra["pgd_monitor"]["steps"] == 3
    assert "digits/fastcnn-fgsm-rs" in result.output and "guard events" in result.output

    result = CliRunner().invoke(tradeoff_command, ["--store", str(store), "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "t.csv")["defense"].tolist() == ["fgsm-rs"]
    assert "1 defended model" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--defense", "pgd", "--threat", "linf:0.1"], r"unknown defense 'pgd'\. Did you mean: pgd-at\?"),
        (["--defense", "pgd-at", "--threat", "linf:2"], r"invalid epsilon 2\.0 for linf"),
        (["--defense", "pgd-at", "--threat", "linf:0.1", "--beta", "3"], r"invalid parameter\(s\) beta for defense"),
        (["--defense", "trades", "--threat", "linf:0.1", "--defense-arg", "sigma"], r"invalid --defense-arg 'sigma'"),
    ],
)
def test_cli_defend_input_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(defend_command, [*args, "--model", "fastcnn", "--store", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    import re

    assert re.search(message, result.output), result.output
    assert not (tmp_path / "checkpoints").exists()


def test_cli_commands_are_attached_to_the_root_group() -> None:
    assert cli.main.commands["defend"] is defend_command and cli.main.commands["tradeoff"] is tradeoff_command
