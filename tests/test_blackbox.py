"""Black-box attacks: the oracle's accounting and opacity, substitute training, transfer and the matrix.

Tiny and seeded: digits (8x8), small CNNs trained once per module, one CPU thread.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.blackbox import (
    CraftedExamples,
    Oracle,
    eval_indices,
    load_seed_set,
    matrix_wide,
    random_noise_attack,
    seed_set_indices,
    train_substitute,
    transfer_attack,
    transfer_matrix,
)
from robustbench_cnn.attacks.targets import choose_targets
from robustbench_cnn.core.errors import BudgetExceededError
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split, select_indices
from robustbench_cnn.models import build_model
from robustbench_cnn.store import load_checkpoint
from robustbench_cnn.training import TrainConfig, fit


def _train(arch: str, epochs: int | None = None, seed: int = 0) -> nn.Module:
    torch.set_num_threads(1)
    train = load_split("digits", "train")
    info = train.info
    model = build_model(arch, in_channels=1, num_classes=10, input_size=8, mean=info.mean, std=info.std)
    fit(
        model,
        train.x,
        train.y,
        TrainConfig.for_dataset("digits", epochs=epochs, device="cpu", seed=seed),
        progress=False,
    )
    return model.eval()


@pytest.fixture(scope="module")
def target() -> nn.Module:
    return _train("fastcnn")


@pytest.fixture(scope="module")
def evalset():
    data = load_split("digits", "test", n=300)  # disjoint from the 150-image seed set (450 test images)
    return data.x, data.y


@pytest.fixture(scope="module")
def substitute(target, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    # growth "budget" (the default): the 850 labels left after the seed set spread over the 3 rounds left
    result = train_substitute(
        target,
        "digits",
        "lenet5",
        rounds=4,
        budget=1000,
        epochs_per_round=5,
        device="cpu",
        store=store,
        target_name="digits/fastcnn-standard",
    )
    return result, store


# --- the oracle ------------------------------------------------------------------------------------


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def test_oracle_counts_every_query_in_total_and_per_sample() -> None:
    model, x = _linear(), torch.rand(12, 1, 8, 8)
    oracle = Oracle(model, "labels")
    oracle(x[:5], ids=torch.arange(5))
    oracle(x[:3], ids=torch.tensor([0, 0, 7]))  # repeated ids count once per occurrence
    oracle(x[:4])  # without ids: total only
    assert oracle.total == 12 and oracle.calls == 3
    assert oracle.counts(torch.tensor([0, 1, 4, 5, 7, 100])).tolist() == [3, 1, 1, 0, 1, 0]
    assert oracle.remaining() is None
    oracle.reset()
    assert oracle.total == 0 and oracle.counts().numel() == 0


def test_oracle_budget_is_enforced_before_the_model_runs() -> None:
    calls = []
    model = _linear()
    model.register_forward_hook(lambda *a: calls.append(1))
    oracle = Oracle(model, "labels", budget=10)
    oracle(torch.rand(6, 1, 8, 8), ids=torch.arange(6))
    assert oracle.remaining() == 4
    with pytest.raises(BudgetExceededError, match=r"budget exceeded: this query needs 5 more, 6 of 10 are used"):
        oracle(torch.rand(5, 1, 8, 8), ids=torch.arange(5))
    assert oracle.total == 6 and len(calls) == 1 and oracle.counts(torch.arange(6)).tolist() == [1] * 6
    oracle(torch.rand(4, 1, 8, 8))
    assert oracle.remaining() == 0
    with pytest.raises(BudgetExceededError):
        oracle(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="invalid query budget"):
        Oracle(model, budget=-1)


def test_backprop_through_the_oracle_fails_loudly() -> None:
    model = _linear()
    oracle = Oracle(model, "scores", scores="logits")
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    out = oracle(x)
    assert not out.requires_grad and out.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.sum().backward()
    assert x.grad is None and all(p.grad is None for p in model.parameters())
    # not a module: no parameters to reach, and a white-box attack cannot use it as a model
    assert not isinstance(oracle, nn.Module) and not hasattr(oracle, "parameters")
    with pytest.raises((AttributeError, TypeError)):
        get_attack("fgsm")(oracle, x.detach(), torch.zeros(3, dtype=torch.int64), ThreatModel.parse("linf:0.1"))


def test_labels_mode_leaks_no_scores_and_scores_mode_gives_probabilities() -> None:
    model, x = _linear(), torch.rand(8, 1, 8, 8)
    logits = model(x).detach()
    labels = Oracle(model, "labels")(x)
    assert labels.dtype == torch.int64 and labels.shape == (8,)
    assert torch.equal(labels, logits.argmax(1))
    oracle = Oracle(model, "labels")
    oracle(x)
    state = {k: v for k, v in vars(oracle).items() if not k.endswith("__model")}
    assert not any(isinstance(v, torch.Tensor) and v.is_floating_point() for v in state.values())
    probs = Oracle(model, "scores")(x)
    assert torch.allclose(probs.sum(1), torch.ones(8)) and torch.allclose(probs, logits.softmax(1))
    assert torch.allclose(Oracle(model, "scores", scores="logits")(x), logits)
    assert torch.equal(Oracle(model, "scores").labels(x), labels)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        oracle(x * 3)


def test_oracle_restores_the_train_mode_of_the_target() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10)).train()
    x = torch.rand(4, 1, 8, 8)
    oracle = Oracle(model, "scores", scores="logits")
    assert torch.equal(oracle(x), oracle(x))  # eval mode inside: dropout off
    assert model.training


# --- seed set vs. evaluation set ----------------------------------------------------------------------


@pytest.mark.parametrize("total", [450, 10_000])
def test_seed_set_is_disjoint_from_the_evaluation_set(total: int) -> None:
    seed = seed_set_indices(total, 150)
    evaluation = select_indices(total, total - 150)
    assert len(seed) == 150 and not set(seed) & set(evaluation)
    assert set(seed) | set(evaluation) == set(range(total))
    assert np.array_equal(eval_indices(total, None, 150), evaluation)
    with pytest.raises(ValueError, match="overlap the attacker's seed set"):
        eval_indices(total, total - 149, 150)


def test_seed_set_split_is_disjoint_from_load_split() -> None:
    seed = load_seed_set("digits", 150)
    evaluation = load_split("digits", "test", n=300)
    assert len(seed) == 150 and not set(seed.index.tolist()) & set(evaluation.index.tolist())


# --- substitute training ----------------------------------------------------------------------------


def test_substitute_stays_within_budget_and_agrees_with_the_oracle(substitute) -> None:
    result, store = substitute
    hist = result.history
    assert result.queries == 1000  # exactly as counted: 150 + ceil(850 / 3) + ceil(566 / 2) + 283
    assert hist["queries"].tolist() == [150, 434, 717, 1000]
    assert hist["new_queries"].tolist() == [150, 284, 283, 283]
    assert hist["lambda"].tolist() == [0.0, 0.1, 0.1, 0.1]
    assert dict(hist.dtypes.astype(str)) == {
        "round": "int64",
        "lambda": "float64",
        "train_size": "int64",
        "new_queries": "int64",
        "queries": "int64",
        "substitute_accuracy": "float64",
        "agreement": "float64",
        "seconds": "float64",
    }
    assert hist["agreement"].iloc[-1] > 0.6  # measured 0.85 (chance: 0.1)
    model, card = load_checkpoint("digits/lenet5-substitute-of-fastcnn-standard", store)
    assert card.recipe == "substitute" and card.extra["queries"] == 1000
    assert card.extra["target"] == "digits/fastcnn-standard" and len(card.extra["history"]) == 4
    assert card.extra["eval_max_n"] == 300


def test_substitute_reservoir_sign_flip_and_scores_mode(target) -> None:
    result = train_substitute(
        target,
        "digits",
        "lenet5",
        rounds=5,
        tau=2,
        budget=None,
        epochs_per_round=1,
        max_new_per_round=50,
        oracle_mode="scores",
        device="cpu",
        save=False,
    )
    assert result.history["new_queries"].tolist() == [150, 50, 50, 50, 50]
    assert result.history["lambda"].tolist() == [0.0, 0.1, 0.1, -0.1, -0.1]
    assert result.queries == 350 and result.card.extra["oracle_mode"] == "scores"
    with pytest.raises(Exception, match="too small to label the seed set"):
        train_substitute(target, "digits", "lenet5", budget=100, save=False)


# --- transfer ------------------------------------------------------------------------------------------


def test_transfer_from_the_target_itself_is_a_white_box_attack(target, evalset) -> None:
    x, y = evalset
    (res,) = transfer_attack(
        target, target, x, y, ThreatModel.parse("linf:0.3"), "fgsm", source_names=["self"], target_name="t"
    )
    assert res.attack == "transfer:fgsm" and res.params["sources"] == ["self"]
    assert res.success_rate > 0.8  # measured 0.96
    assert torch.equal(res.queries, res.clean_correct.long())  # one query per attacked point
    assert (res.perturbation_norm <= 0.3 + 1e-6).all()
    assert torch.equal(res.x_adv[~res.clean_correct], x[~res.clean_correct])
    assert not res.success[~res.clean_correct].any()


def test_transfer_from_the_substitute_beats_random_noise(substitute, target, evalset) -> None:
    x, y = evalset
    sub = substitute[0].model
    results = transfer_attack(sub, target, x, y, "linf", "fgsm", eps_list=[0.3, 0.1])
    assert [r.threat.eps for r in results] == [0.1, 0.3]
    noise = random_noise_attack(target, x, y, ThreatModel.parse("linf:0.3"))
    assert noise.success_rate < 0.3  # measured 0.16
    assert results[1].success_rate > noise.success_rate + 0.2  # measured 0.70 vs 0.16
    oracle = Oracle(target, "labels", budget=2 * len(y))
    (mi,) = transfer_attack({"sub": sub, "self": target}, oracle, x, y, ThreatModel.parse("linf:0.3"), "mi-fgsm")
    assert mi.params["sources"] == ["sub", "self"] and oracle.total == len(y) + int(mi.clean_correct.sum())


def test_crafted_examples_are_reused_only_for_the_same_crafting(substitute, target, evalset) -> None:
    """A second target scores the examples crafted for the first (the same ones: equal to crafting afresh); another
    seed, epsilon list or source crafts again."""
    x, y = evalset
    sub = substitute[0].model
    other = _train("lenet5", epochs=2)
    cache = CraftedExamples()
    transfer_attack(sub, target, x, y, "linf", "fgsm", eps_list=[0.1, 0.3], crafted=cache)
    again = transfer_attack(sub, other, x, y, "linf", "fgsm", eps_list=[0.1, 0.3], crafted=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    fresh = transfer_attack(sub, other, x, y, "linf", "fgsm", eps_list=[0.1, 0.3])
    for reused, new in zip(again, fresh, strict=True):
        assert torch.equal(reused.x_adv, new.x_adv) and torch.equal(reused.success, new.success)
        assert reused.params == new.params
    for kwargs in ({"seed": 1}, {"eps_list": [0.3]}):
        params = {"eps_list": [0.1, 0.3], **kwargs}
        transfer_attack(sub, other, x, y, "linf", "fgsm", crafted=cache, **params)
    transfer_attack(other, target, x, y, "linf", "fgsm", eps_list=[0.1, 0.3], crafted=cache)
    assert (cache.hits, cache.misses) == (1, 4)
    one_set = x.numel() * x.element_size()
    assert cache.nbytes == one_set * (2 + 2 + 1 + 2)  # four crafts kept: 2, 2 (seed 1), 1 (eps 0.3 only), 2 epsilons
    small = CraftedExamples(max_bytes=3 * one_set)  # room for one two-epsilon craft and one one-epsilon craft
    for eps_list in ([0.1, 0.3], [0.3], [0.2, 0.3]):
        transfer_attack(sub, target, x, y, "linf", "fgsm", eps_list=eps_list, crafted=small)
    assert small.nbytes <= 3 * one_set
    transfer_attack(sub, other, x, y, "linf", "fgsm", eps_list=[0.2, 0.3], crafted=small)  # the newest: kept
    transfer_attack(sub, other, x, y, "linf", "fgsm", eps_list=[0.1, 0.3], crafted=small)  # the oldest: gone
    assert (small.hits, small.misses) == (1, 4)


def test_targeted_transfer_counts_success_only_on_the_target_class(target, evalset) -> None:
    x, y = evalset
    targets = choose_targets("next", None, y, 10)
    (res,) = transfer_attack(
        target,
        target,
        x,
        y,
        ThreatModel.parse("linf:0.3"),
        "pgd",
        targets=targets,
        attack_params={"steps": 10, "rel_stepsize": 0.1},
    )
    assert res.targeted and torch.equal(res.target, targets)
    assert torch.equal(res.success, res.clean_correct & (res.pred_adv == targets))
    assert res.success_rate > 0.5  # white-box PGD-10, measured 0.87
    assert res.params["source_attack_params"]["early_stop"] is False


def test_transfer_refuses_black_box_source_attacks(target, evalset) -> None:
    x, y = evalset
    with pytest.raises(ValueError, match="white-box attack on the source"):
        transfer_attack(target, target, x, y, ThreatModel.parse("linf:0.3"), "square")


def test_transfer_matrix_over_three_architectures(target, evalset) -> None:
    x, y = evalset
    models = {"fastcnn": target, "lenet5": _train("lenet5", seed=1), "smallcnn": _train("smallcnn", epochs=5, seed=2)}
    table = transfer_matrix(models, x, y, ThreatModel.parse("linf:0.2"), "fgsm")
    assert len(table) == 9 and table["white_box"].sum() == 3
    assert (table["white_box"] == (table["source"] == table["target"])).all()
    assert str(table["n"].dtype) == "int64" and str(table["success_rate"].dtype) == "float64"
    assert str(table["source"].dtype) == "string"
    diag = table.loc[table["white_box"], "success_rate"].mean()
    off = table.loc[~table["white_box"], "success_rate"].mean()
    assert diag >= off  # measured 0.87 vs 0.59
    wide = matrix_wide(table)
    assert list(wide.index) == list(models) and list(wide.columns) == list(models)


# --- the command line ----------------------------------------------------------------------------------


def _invoke(command, *args: str):
    return CliRunner().invoke(command, list(args))


def test_cli_proxy_train_then_transfer_then_matrix(store, tmp_path) -> None:
    from robustbench_cnn.commands.blackbox import proxy_group, transfer_command, transfer_matrix_command
    from robustbench_cnn.workflows import train_model

    train_model("fastcnn", "digits", TrainConfig.for_dataset("digits", epochs=8, device="cpu"), progress=False)
    res = _invoke(
        proxy_group,
        "train",
        "--target",
        "digits/fastcnn-standard",
        "--rounds",
        "2",
        "--epochs-per-round",
        "2",
        "--budget",
        "250",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(tmp_path / "proxy"),
    )
    assert res.exit_code == 0, res.output
    assert "--source digits/lenet5-substitute-of-fastcnn-standard" in res.output
    history = pd.read_parquet(tmp_path / "proxy" / "history.parquet")
    assert history["queries"].tolist() == [150, 250]

    res = _invoke(
        transfer_command,
        "--source",
        "digits/lenet5-substitute-of-fastcnn-standard",
        "--target",
        "digits/fastcnn-standard",
        "--attack",
        "fgsm",
        "--eps",
        "0.1,0.3",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "transfer"),
    )
    assert res.exit_code == 0, res.output
    summary = pd.read_parquet(tmp_path / "transfer" / "summary.parquet")
    assert summary["eps"].tolist() == [0.1, 0.3] and (summary["n"] == 300).all()  # capped: disjoint
    assert (summary["attack"] == "transfer:fgsm").all() and str(summary["total_queries"].dtype) == "Int64"
    assert (summary["total_queries"] == summary["attacked"]).all()  # one target query per attacked point
    samples = pd.read_parquet(tmp_path / "transfer" / "samples.parquet")
    assert len(samples) == 600 and not set(samples["sample_id"]) & set(load_seed_set("digits", 150).index.tolist())
    assert json.loads((tmp_path / "transfer" / "run.json").read_text())["command"] == "transfer"

    res = _invoke(
        transfer_command,
        "--source",
        "digits/lenet5-substitute-of-fastcnn-standard,digits/fastcnn-standard",
        "--target",
        "digits/fastcnn-standard",
        "--threat",
        "linf:0.3",
        "--targeted",
        "--target-policy",
        "next",
        "-n",
        "50",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "t2"),
    )
    assert res.exit_code == 0, res.output
    summary = pd.read_parquet(tmp_path / "t2" / "summary.parquet")
    assert summary["targeted"].all() and summary["target_policy"].tolist() == ["next"]

    res = _invoke(
        transfer_matrix_command,
        "--models",
        "digits/fastcnn-standard,digits/lenet5-substitute-of-fastcnn-standard",
        "--threat",
        "linf:0.3",
        "-n",
        "100",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "m"),
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "m" / "transfer_matrix.parquet")) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "a/b", "--target", "a/b", "--attack", "square", "--threat", "linf:0.3"], "white-box"),
        (["--source", "a/b", "--target", "a/b", "--threat", "linf"], "no epsilon"),
        (["--source", "a/b", "--target", "digits/nope", "--threat", "linf:0.3"], "no checkpoint 'digits/nope'"),
    ],
)
def test_cli_transfer_errors_are_one_line(store, args, message) -> None:
    from robustbench_cnn.commands.blackbox import transfer_command

    res = _invoke(transfer_command, *args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], res.output


# --- issue 18: the default substitute transfers better than Papernot's at the same budget --------------------


def _seeded_target(arch: str = "fastcnn") -> nn.Module:
    """A digits target whose initial weights come from seed 0 (not from the global RNG's history)."""
    torch.set_num_threads(1)
    train = load_split("digits", "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(arch, in_channels=1, num_classes=10, input_size=8, mean=train.info.mean, std=train.info.std)
    fit(model, train.x, train.y, TrainConfig.for_dataset("digits", device="cpu", seed=0), progress=False)
    return model.eval()


#: FGSM transfer success at linf 0.3 of the start commit's implementation (39f822c: Papernot's doubling and
#: Jacobian augmentation only) in ``test_default_substitute_beats_papernot_at_the_same_budget``'s setting, seed 0:
#: 150 -> 100 seeds, 4 rounds, 800 labels, 5 epochs per round, fastcnn substitute of a seeded fastcnn target.
PREVIOUS_SUCCESS = 0.864


def test_default_substitute_beats_papernot_at_the_same_budget() -> None:
    target = _seeded_target()
    data = load_split("digits", "test", n=300)
    setting = dict(seed_size=100, rounds=4, budget=800, epochs_per_round=5, device="cpu", save=False, seed=0)
    success = {}
    papernot = dict(growth="double", augmentations=("jacobian",), members=1)  # Algorithm 1: one substitute
    for name, options in {"papernot": papernot, "default": {}}.items():
        sub = train_substitute(target, "digits", "fastcnn", **setting, **options)
        assert sub.queries == 800  # the same budget, all of it labelled, in both settings
        (res,) = transfer_attack(sub.model, target, data.x, data.y, ThreatModel.parse("linf:0.3"), "fgsm")
        success[name] = res.success_rate
    # Measured (1 thread): previous implementation 0.864 / 0.827 / 0.793 on seeds 0 / 1 / 2, its setting on this
    # branch (papernot) 0.864 / 0.844 / 0.793, the default 0.942 / 0.952 / 0.939: the smallest gain over seeds was
    # 7.8 points; with ~290 attacked points one success rate has a standard error of ~1.7 points, so a gain of 3
    # points is below the smallest measured one by more than two standard errors.
    assert success["default"] >= PREVIOUS_SUCCESS + 0.03, success
    assert success["default"] >= success["papernot"] + 0.03, success


def test_augment_points_shares_steps_and_parents() -> None:
    from robustbench_cnn.attacks.blackbox.augment import augment_points

    model, gen = _linear(), torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8) * 0.5 + 0.25  # away from the box: no clipping
    labels = torch.tensor([0, 1, 2])
    new, parents = augment_points(model, x, labels, 7, 0.1, gen, kinds=("jacobian", "fgsm", "noise"), probe_eps=0.3)
    assert new.shape == (7, 1, 8, 8) and sorted(torch.bincount(parents).tolist()) == [2, 2, 3]
    delta = (new - x[parents]).abs().flatten(1).amax(1)
    assert torch.allclose(delta[0::3], torch.full((3,), 0.1))  # jacobian: lambda on every pixel
    assert torch.allclose(delta[1::3], torch.full((2,), 0.3))  # fgsm: probe_eps on every pixel
    assert (delta[2::3] <= 0.1).all() and (delta[2::3] > 0).all()  # noise: within lambda
    shifted, par = augment_points(model, x, labels, 3, 0.1, gen, kinds=("shift-fgsm",), max_shift=0)
    assert torch.allclose((shifted - x[par]).abs().flatten(1).amax(1), torch.full((3,), 0.3))  # no shift: pure fgsm
    with pytest.raises(ValueError, match="invalid augmentation"):
        augment_points(model, x, labels, 2, 0.1, gen, kinds=("rotate",))


def test_cli_proxy_unknown_augmentation_is_one_line(store) -> None:
    from robustbench_cnn.commands.blackbox import proxy_group

    res = _invoke(proxy_group, "train", "--target", "digits/nope", "--augment", "shfit-fgsm")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Did you mean: shift-fgsm" in lines[0], res.output


def test_fgsm_smoothed_gradient_is_seeded_and_transfer_defaults_apply(substitute, target, evalset) -> None:
    x, y = evalset
    sub = substitute[0].model
    threat = ThreatModel.parse("linf:0.3")
    plain = get_attack("fgsm")(sub, x, y, threat, seed=0)
    assert torch.equal(get_attack("fgsm", grad_samples=1, grad_sigma=2.0)(sub, x, y, threat, seed=5).x_adv, plain.x_adv)
    smooth = [get_attack("fgsm", grad_samples=8)(sub, x, y, threat, seed=s).x_adv for s in (0, 0, 1)]
    assert torch.equal(smooth[0], smooth[1]) and not torch.equal(smooth[0], smooth[2])  # seeded noise
    assert not torch.equal(smooth[0], plain.x_adv)
    for adv in smooth:  # one signed step: on the sphere of the ball wherever [0, 1] allows, inside [0, 1]
        assert (adv - x).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with pytest.raises(ValueError, match="grad_samples >= 1"):
        get_attack("fgsm", grad_samples=0)
    # crafting for a transfer takes FGSM's transfer defaults; given parameters win; a white-box FGSM keeps its own
    (res,) = transfer_attack(sub, target, x, y, threat, "fgsm")
    assert res.params["source_attack_params"] == {
        "loss": "margin",
        "grad_samples": 50,
        "grad_sigma": 5 / 3,
        "grad_shift": 1 / 28,
    }
    (given,) = transfer_attack(sub, target, x, y, threat, "fgsm", attack_params={"grad_samples": 1, "loss": "ce"})
    assert (
        given.params["source_attack_params"]["grad_samples"] == 1
        and given.params["source_attack_params"]["loss"] == "ce"
    )
    assert plain.params["grad_samples"] == 1 and plain.params["loss"] == "ce"


def test_fgsm_gradient_translations_average_the_gradient_over_shifted_copies() -> None:
    """``grad_shift``: each noisy copy is translated by up to ``round(grad_shift * side)`` pixels and its gradient
    translated back. On a linear model (the same gradient everywhere, no pixel clipped) the averaged gradient is then
    a mean of translated copies of the weights: with a one-pixel shift, the sign step of a weight map with a single
    positive pixel covers its 3x3 neighbourhood, without it only the pixel. On the 8x8 digits 1/28 of the side
    rounds to no translation, and the attack is the one without the parameter, number for number."""
    from robustbench_cnn.attacks.fgsm import translation_pixels

    assert translation_pixels(1 / 28, (28, 28)) == 1 and translation_pixels(1 / 28, (32, 32)) == 1
    assert translation_pixels(1 / 28, (8, 8)) == 0 and translation_pixels(1 / 28, (224, 224)) == 8

    def linear(side: int) -> nn.Module:
        model = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 2, bias=False))
        with torch.no_grad():
            model[1].weight.zero_()
            model[1].weight[1].view(side, side)[side // 2, side // 2] = 1.0  # class 1 reads one pixel
        return model.requires_grad_(False)

    threat = ThreatModel.parse("linf:0.01")  # noise of 5/3 eps keeps every copy of 0.5 inside [0, 1]
    x, y = torch.full((1, 1, 28, 28), 0.5), torch.tensor([1])  # classified right: attacked
    params = dict(loss="ce", grad_samples=200, grad_sigma=5 / 3)
    shifted = get_attack("fgsm", grad_shift=1 / 28, **params)(linear(28), x, y, threat, seed=0).x_adv
    fixed = get_attack("fgsm", **params)(linear(28), x, y, threat, seed=0).x_adv
    moved = (shifted - x).abs() > 1e-4
    assert moved.sum() == 9 and moved[0, 0, 13:16, 13:16].all()  # the pixel and its 8 neighbours
    assert ((fixed - x).abs() > 1e-4).sum() == 1
    small = torch.full((2, 1, 8, 8), 0.5), torch.tensor([1, 1])
    a = get_attack("fgsm", grad_shift=1 / 28, **params)(linear(8), *small, threat, seed=3).x_adv
    assert torch.equal(a, get_attack("fgsm", **params)(linear(8), *small, threat, seed=3).x_adv)
    with pytest.raises(ValueError, match="grad_shift"):
        get_attack("fgsm", grad_shift=0.5)


def test_the_default_substitute_is_an_ensemble_of_members_trained_on_the_same_labels(target) -> None:
    setting = dict(seed_size=100, rounds=3, budget=500, epochs_per_round=3, device="cpu", save=False, seed=0)
    single = train_substitute(target, "digits", "fastcnn", members=1, **setting)
    ens = train_substitute(target, "digits", "fastcnn", members=3, member_epochs=5, **setting)
    assert single.queries == ens.queries == 500  # the members cost no query
    assert single.card.arch == "fastcnn" and ens.card.arch == "ensemble"
    assert ens.card.arch_kwargs == {"member_arch": "fastcnn", "members": 3, "member_kwargs": {}}
    members = ens.model.net.members
    assert len(members) == 3
    # the first member is the substitute trained through the rounds, exactly the single substitute
    assert all(
        torch.equal(a, b) for a, b in zip(members[0].state_dict().values(), single.model.net.state_dict().values())
    )
    assert not torch.equal(members[1][0].weight, members[2][0].weight)  # each further member has its own seed
    x = load_split("digits", "test", n=20).x
    with torch.no_grad():
        z = (x - ens.model.mean) / ens.model.std
        mean_logits = torch.stack([m(z) for m in members]).mean(0)
        torch.testing.assert_close(ens.model(x), mean_logits)
    extra = ens.card.extra["ensemble"]
    assert extra["members"] == 3 and ens.card.clean_accuracy == extra["ensemble_accuracy"]


def test_an_ensemble_substitute_architecture_needs_one_member(target) -> None:
    with pytest.raises(ValueError, match="already an ensemble"):
        train_substitute(target, "digits", "ensemble", members=3, device="cpu", save=False)
