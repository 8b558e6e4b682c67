"""Evaluation engine: per-sample worst case, growing ball, validity flags, results tables, attack CLI."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from attack_fixtures import digits, trained_model
from click.testing import CliRunner
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.evaluation.engine import evaluate, resolve_attacks
from robustbench_cnn.pipeline.cells.whitebox import summary_records
from robustbench_cnn.tables.results import SUMMARY_SCHEMA, RunStore, comparable


@pytest.fixture(scope="module")
def data():
    _, _, x, y = digits()
    return x[:120], y[:120]


def test_worst_case_is_the_per_sample_and_of_each_attack(data) -> None:
    x, y = data
    model = trained_model()
    attacks = [get_attack("pgd", steps=10, random_start=False, rel_stepsize=0.25), get_attack("fgsm")]
    ev = evaluate(model, x, y, "linf", [0.1], attacks)
    threat = ThreatModel(Norm.LINF, 0.1)
    alone = [a(model, x, y, threat).robust for a in attacks]
    assert torch.equal(ev.outcomes[0].robust, alone[0] & alone[1])
    assert ev.robust_accuracy(0.1) <= min(float(r.float().mean()) for r in alone)


def test_growing_ball_is_monotone_and_starts_at_clean(data) -> None:
    x, y = data
    ev = evaluate(trained_model(), x, y, "linf", [0.2, 0, 0.05, 0.1], "quick")
    assert ev.eps_list == [0, 0.05, 0.1, 0.2]
    assert ev.robust_accuracy(0) == ev.clean_accuracy
    for small, large in zip(ev.outcomes, ev.outcomes[1:]):
        assert bool((large.robust <= small.robust).all())  # robust at a larger eps => robust at smaller
    assert ev.robust_accuracy(0.2) < ev.clean_accuracy


def test_misclassified_points_are_not_attacked(data) -> None:
    x, y = data
    model = trained_model(steps=20)  # weak model: many mistakes
    ev = evaluate(model, x, y, "linf", [0.1], "fgsm")
    wrong = ~ev.clean_correct
    assert wrong.any() and bool((ev.outcomes[0].broken_by[wrong] == -1).all())


def test_targeted_success_means_reaching_the_target(data) -> None:
    x, y = data
    ev = evaluate(trained_model(), x, y, "linf", [0.3], "pgd", targeted=True, target_policy="next")
    assert torch.equal(ev.targets, (ev.labels + 1) % 10)
    o = ev.outcomes[0]
    broken = o.broken_by >= 0
    assert broken.any() and torch.equal(o.pred_adv[broken], ev.targets[broken])


class Softmaxed(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).softmax(1)


class Noisy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x + 0.05 * torch.randn_like(x))


class Quantized(nn.Module):
    """Rounds inputs to 4 levels: zero gradients almost everywhere (classic gradient masking)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 3) / 3)


@pytest.mark.parametrize(
    "wrapper,code", [(Softmaxed, "probabilities"), (Noisy, "randomized"), (Quantized, "zero-gradients")]
)
def test_model_flags(data, wrapper, code) -> None:
    x, y = data
    ev = evaluate(wrapper(trained_model()), x[:40], y[:40], "linf", [0.05], "fgsm")
    assert code in {f.code for f in ev.flags}
    clean = evaluate(trained_model(), x[:40], y[:40], "linf", [0.05], "fgsm")
    assert code not in {f.code for f in clean.flags}


def test_train_mode_is_flagged_and_restored(data) -> None:
    x, y = data
    model = trained_model().train()
    ev = evaluate(model, x[:40], y[:40], "linf", [0.05], "fgsm")
    assert "train-mode" in {f.code for f in ev.flags} and model.training


def test_single_step_beating_iterative_is_flagged(data) -> None:
    x, y = data
    weak_pgd = get_attack("pgd", steps=2, abs_stepsize=0.001, random_start=False)
    ev = evaluate(trained_model(), x, y, "linf", [0.2], [weak_pgd, get_attack("fgsm")])
    assert "single-step-beats-iterative" in {f.code for f in ev.flags}


def test_above_chance_at_huge_eps_is_flagged(data) -> None:
    x, y = data
    useless = get_attack("pgd", steps=1, abs_stepsize=1e-4, random_start=False)
    ev = evaluate(trained_model(), x[:60], y[:60], "linf", [0.6], [useless])
    assert "above-chance" in {f.code for f in ev.flags}


def test_suite_resolution_and_errors() -> None:
    label, chain = resolve_attacks("standard", Norm.LINF)
    assert label == "standard" and [a.name for a in chain][:2] == ["pgd", "apgd-ce"]
    assert "square" in [a.name for a in chain]
    with pytest.raises(ValueError, match="'cw-l2' does not support norm linf: use l2"):
        resolve_attacks("cw-l2", Norm.LINF)
    assert [a.name for a in resolve_attacks("pgd,fgsm", Norm.L2)[1]] == ["pgd", "fgsm"]


def test_summary_rows_have_the_schema(data) -> None:
    from robustbench_cnn.tables.results import typed_frame

    x, y = data
    ev = evaluate(trained_model(), x[:50], y[:50], "linf", [0, 0.1], "quick")
    frame = typed_frame([{"model": "tiny", **r} for r in summary_records(ev, "quick")], SUMMARY_SCHEMA)
    assert list(frame.columns) == list(SUMMARY_SCHEMA)
    assert set(frame["attack"]) == {"pgd", "fgsm", "worst-case"} and len(frame) == 6
    worst = frame[frame["attack"] == "worst-case"].set_index("eps")["robust_acc"]
    assert worst[0.1] == pytest.approx(ev.robust_accuracy(0.1))
    assert str(frame["eps"].dtype) == "Float64" and str(frame["targeted"].dtype) == "boolean"


# --- results store and CLI -------------------------------------------------------------------------


@pytest.fixture()
def digits_model(store):
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=5), progress=False)
    return "digits/lenet5-standard"


def test_cells_resume_without_losing_or_duplicating_rows(digits_model, tmp_path) -> None:
    from robustbench_cnn.core.errors import RbcError
    from robustbench_cnn.pipeline.cells import whitebox_cell
    from robustbench_cnn.pipeline.runner import run_cells

    cells = [whitebox_cell(digits_model, "digits", "linf", [0, 0.1], s, n=60) for s in ("fgsm", "pgd")]
    full = run_cells(cells, tmp_path / "full", progress=False).summary()
    partial = run_cells(cells[:1], tmp_path / "part", progress=False)
    with pytest.raises(RbcError, match="pass --resume"):
        run_cells(cells, tmp_path / "part", progress=False)
    resumed = run_cells(cells, tmp_path / "part", resume=True, progress=False)
    assert len(resumed.summary()) == len(full) == 4
    pd.testing.assert_frame_equal(
        comparable(resumed.summary().drop(columns="cell_id")), comparable(full.drop(columns="cell_id"))
    )
    assert (partial.dir / "samples.parquet").exists() and len(RunStore(partial.dir).samples()) == 4 * 60 // 2 * 2


def test_cli_attack_writes_tables_and_rejects_bad_input(digits_model, tmp_path) -> None:
    from cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "attack",
            "-m",
            digits_model,
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "-n",
            "50",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = pd.read_parquet(out / "summary.parquet")
    assert list(summary["eps"]) == [0.0, 0.1] and summary["robust_acc"].iloc[0] == summary["clean_acc"].iloc[0]
    assert len(pd.read_parquet(out / "samples.parquet")) == 100 and (out / "run.json").exists()
    bad = CliRunner().invoke(main, ["attack", "-m", digits_model, "--eps", "-1"])
    assert bad.exit_code == 2 and "invalid epsilon" in bad.output
    bad = CliRunner().invoke(main, ["attack", "-m", digits_model, "--eps", "0.1", "-p", "stepz=3"])
    assert bad.exit_code == 2 and "accepted" in bad.output


def test_bring_your_own_model(tmp_path) -> None:
    from safetensors.torch import save_file

    from cli import main

    (tmp_path / "mine.py").write_text(
        "import torch\nfrom torch import nn\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
    )
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    result = CliRunner().invoke(
        main,
        [
            "attack",
            "--model-def",
            f"{tmp_path / 'mine.py'}:build",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--attack",
            "fgsm",
            "--eps",
            "0.1",
            "-n",
            "30",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = pd.read_parquet(tmp_path / "run" / "summary.parquet")
    assert summary["checkpoint_sha256"].iloc[0] and len(summary) == 1
    assert "no --weights" not in result.output
    bare = CliRunner().invoke(
        main,
        [
            "attack",
            "--model-def",
            f"{tmp_path / 'mine.py'}:build",
            "--attack",
            "fgsm",
            "--eps",
            "0.1",
            "-n",
            "10",
            "--out",
            str(tmp_path / "bare"),
            "--no-progress",
        ],
    )
    assert bare.exit_code == 0 and "Warning: no --weights" in bare.output  # an untrained model, said so
    wrong = CliRunner().invoke(
        main,
        [
            "attack",
            "--model-def",
            f"{tmp_path / 'mine.py'}:build",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--dataset",
            "imagefolder:/nonexistent",
            "--eps",
            "0.1",
            "--out",
            str(tmp_path / "wrong"),
        ],
    )
    assert wrong.exit_code == 2


def test_cascade_flags_count_only_points_broken_at_their_own_eps(data) -> None:
    """broken_by accumulates along the growing ball: a point broken at 0.2 must not be re-counted at 0.21."""
    import re

    x, y = data
    weak_pgd = get_attack("pgd", steps=2, abs_stepsize=0.001, random_start=False)
    ev = evaluate(trained_model(), x, y, "linf", [0.2, 0.21], [weak_pgd, get_attack("fgsm")])
    counts = {
        f.eps: int(re.search(r"fgsm broke (\d+) more", f.message).group(1))
        for f in ev.flags
        if f.code == "single-step-beats-iterative"
    }
    first = int((ev.outcomes[0].broken_by == 1).sum())
    assert counts[0.2] == first > 0
    newly = int(((ev.outcomes[1].broken_by == 1) & ev.outcomes[0].robust).sum())
    assert counts.get(0.21, 0) == (newly if newly > 0.005 * len(y) else 0) < first


class _CountingModel(nn.Module):
    """Counts forward passes with gradient (attack steps) and without (clean predictions, re-evaluations)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.grad_calls = self.no_grad_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.grad_calls += 1
        else:
            self.no_grad_calls += 1
        return self.model(x)


def test_known_clean_logits_save_the_clean_pass_and_change_nothing(data) -> None:
    x, y = data
    model = _CountingModel(trained_model())
    attack = get_attack("pgd", steps=5, early_stop=False)
    threat = ThreatModel(Norm.LINF, 0.1)
    plain = attack(model, x, y, threat, seed=3)
    calls_plain = model.no_grad_calls
    with torch.no_grad():
        logits = model(x)
    model.no_grad_calls = 0
    given = attack(model, x, y, threat, seed=3, clean_logits=logits)
    assert model.no_grad_calls == calls_plain - 1  # the clean forward is skipped, the re-evaluation is not
    assert torch.equal(plain.x_adv, given.x_adv) and torch.equal(plain.success, given.success)
    assert torch.equal(plain.clean_correct, given.clean_correct)
    with pytest.raises(ValueError, match="clean_logits"):
        attack(model, x, y, threat, clean_logits=logits[:5])


def test_warm_start_begins_at_the_given_point_projected(data) -> None:
    x, y = data
    model = trained_model()
    threat = ThreatModel(Norm.LINF, 0.1)
    inside = (x + 0.05 * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))).clamp(0, 1)
    outside = (x + 0.5).clamp(0, 1)
    zero_steps = get_attack("pgd", steps=0)
    started = zero_steps(model, x, y, threat, start=inside)
    attacked = started.clean_correct
    assert attacked.sum() > 0 and torch.equal(started.x_adv[attacked], inside[attacked])
    projected = zero_steps(model, x, y, threat, start=outside)
    assert float((projected.x_adv - x).abs().amax()) <= 0.1 + 1e-6
    # attacks without warm starts ignore the argument
    fgsm = get_attack("fgsm")
    assert torch.equal(fgsm(model, x, y, threat, start=inside).x_adv, fgsm(model, x, y, threat).x_adv)
    with pytest.raises(ValueError, match="start"):
        zero_steps(model, x, y, threat, start=inside[:3])


def test_warm_started_curve_is_no_weaker_than_fresh_starts(data) -> None:
    x, y = data
    model = trained_model()
    eps = [0.02, 0.04, 0.06, 0.08, 0.1]
    attack = [get_attack("pgd", steps=10)]
    warm = evaluate(model, x, y, "linf", eps, attack, seed=0, warm_start=True)
    fresh = evaluate(model, x, y, "linf", eps, attack, seed=0, warm_start=False)
    assert warm.robust_accuracy(0.02) == fresh.robust_accuracy(0.02)  # nothing to start from at the first eps
    assert all(w <= f for (_, w), (_, f) in zip(warm.curve(), fresh.curve()))
    assert sum(w for _, w in warm.curve()) < sum(f for _, f in fresh.curve())
    # Attack.robustness_curve grows the ball too when asked, and agrees with evaluate on a single attack
    curve = attack[0].robustness_curve(model, x, y, "linf", eps, seed=0, order="ascending")
    assert [r.robust_accuracy for r in curve] == [a for _, a in warm.curve()]


class _NoisyInput(nn.Module):
    """A randomized defense: Gaussian noise on the input before the classifier."""

    def __init__(self, model: nn.Module, sigma: float = 0.2) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


def test_pgd_eot_averages_gradient_samples(data) -> None:
    x, y = data
    counter = _CountingModel(trained_model())
    get_attack("pgd", steps=2, eot_samples=3, early_stop=False)(counter, x, y, ThreatModel(Norm.LINF, 0.1))
    assert counter.grad_calls == 6
    threat = ThreatModel(Norm.LINF, 0.1)
    one = get_attack("pgd", steps=5, eot_samples=1)(trained_model(), x, y, threat, seed=1)
    plain = get_attack("pgd", steps=5)(trained_model(), x, y, threat, seed=1)
    assert torch.equal(one.x_adv, plain.x_adv)  # eot_samples=1 is plain PGD
    with pytest.raises(ValueError, match="eot_samples"):
        get_attack("pgd", eot_samples=0)


def test_randomized_models_are_evaluated_with_eot_and_flagged(data) -> None:
    x, y = data
    torch.manual_seed(0)
    noisy = _NoisyInput(trained_model())
    ev = evaluate(noisy, x[:40], y[:40], "linf", [0.1], [("pgd", {"steps": 3}), ("fgsm", {})])
    codes = {f.code for f in ev.flags}
    assert {"randomized", "eot"} <= codes
    assert ev.attacks[0].params["eot_samples"] == 20  # the chain actually run, as recorded in the tables
    assert ev.attacks[1].name == "fgsm" and "eot" not in "".join(ev.attacks[1].params)
    rows = summary_records(ev, "pgd,fgsm")
    assert '"eot_samples": 20' in next(r["attack_params"] for r in rows if r["attack"] == "pgd")
    off = evaluate(noisy, x[:40], y[:40], "linf", [0.1], [("pgd", {"steps": 3})], eot=1)
    assert off.attacks[0].params["eot_samples"] == 1 and "eot" not in {f.code for f in off.flags}
    deterministic = evaluate(trained_model(), x[:40], y[:40], "linf", [0.1], [("pgd", {"steps": 3})])
    assert deterministic.attacks[0].params["eot_samples"] == 1
