"""What the evaluation engine counts: targeted skips, query columns, the eps=0 check, and the model's state
(regression tests for bugs a review found)."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import digits, trained_model
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.evaluation.engine import evaluate, evaluate_all_targets
from robustbench_cnn.pipeline.cells.whitebox import sample_records, summary_records
from robustbench_cnn.pipeline.plan import parse_plan


@pytest.fixture(scope="module")
def data():
    _, _, x, y = digits()
    return x[:120], y[:120]


def test_class_k_targets_leave_points_of_class_k_robust_as_the_attack_does(data) -> None:
    x, y = data
    model = trained_model()
    k = 3
    ev = evaluate(model, x, y, "linf", [0.0, 0.05], "pgd", targeted=True, target_policy=f"class:{k}")
    skipped = ev.clean_correct & (ev.labels == k)
    assert skipped.any()
    for o in ev.outcomes:  # never attacked, never counted as broken
        assert bool(o.robust[skipped].all()) and bool((o.broken_by[skipped] == -1).all())
    assert ev.robust_accuracy(0.0) == ev.clean_accuracy
    assert "eps0-mismatch" not in {f.code for f in ev.flags}
    alone = get_attack("pgd")(model, x, y, ThreatModel(Norm.LINF, 0.05), targets=torch.full_like(y, k))
    assert ev.robust_accuracy(0.05) == pytest.approx(alone.robust_accuracy)
    # success rates count the attacked points only: the skipped ones are in neither numerator nor denominator
    attacked = alone.clean_correct & (y != k)
    assert torch.equal(alone.attacked, attacked)
    assert alone.success_rate == pytest.approx(float(alone.success.sum()) / int(attacked.sum()))
    row = next(r for r in summary_records(ev, "pgd") if r["eps"] == 0.05 and r["attack"] == "pgd")
    broken = int((ev.outcomes[1].broken_by >= 0).sum())
    assert row["success_rate"] == pytest.approx(broken / int(attacked.sum()))


class _FrozenNorm(nn.Module):
    """A model left in train mode with its batch norm frozen in eval mode (fine-tuning style)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.net = trained_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.bn(x))


def test_evaluate_restores_each_module_mode_also_after_an_error(data) -> None:
    x, y = data
    model = _FrozenNorm().train()
    model.bn.eval()
    evaluate(model, x[:40], y[:40], "linf", [0.05], "fgsm")
    assert model.training and not model.bn.training
    assert all(p.requires_grad for p in model.parameters())

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model.net.head = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, x[:40], y[:40], "linf", [0.05], "fgsm")
    assert model.training and not model.bn.training


def test_all_targets_matrix_leaves_batch_norm_statistics_alone(data) -> None:
    x, y = data
    model = _FrozenNorm().train()  # batch norm in train mode too: a forward pass would update its stats
    before = {k: v.clone() for k, v in model.bn.state_dict().items()}
    matrix = evaluate_all_targets(model, x[:30], y[:30], ThreatModel(Norm.LINF, 0.1), get_attack("pgd", steps=3))
    assert matrix.shape == (10, 10) and bool(torch.isnan(matrix.diagonal()).all())
    for key, value in model.bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and model.bn.training


def test_queries_are_counted_per_epsilon_in_every_row(data) -> None:
    x, y = data
    ev = evaluate(trained_model(), x[:40], y[:40], "linf", [0.02, 0.04], [("fgsm", {}), ("square", {"n_queries": 30})])
    rows = summary_records(ev, "fgsm,square")
    for eps in (0.02, 0.04):
        at = {r["attack"]: r for r in rows if r["eps"] == eps}
        assert at["square"]["total_queries"] > 0
        assert at["worst-case"]["total_queries"] == at["fgsm"]["total_queries"] + at["square"]["total_queries"]
    samples = sample_records(ev)
    for o in ev.outcomes:
        assert sum(r["queries"] for r in samples if r["eps"] == o.eps) == int(o.queries.sum())
    curve = get_attack("square", n_queries=30).robustness_curve(trained_model(), x[:40], y[:40], "linf", [0.02, 0.04])
    assert int(curve[1].queries[~curve[0].robust].sum()) == 0  # points broken earlier cost nothing later


class _Flaky(nn.Module):
    """Deterministic in its first two passes (so the model checks pass), random afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.net = trained_model()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.net(x)
        return out if self.calls <= 3 else out + 50 * torch.randn_like(out)


def test_eps0_mismatch_fires_when_the_answers_do_not_reproduce(data) -> None:
    x, y = data
    torch.manual_seed(0)
    ev = evaluate(_Flaky(), x[:60], y[:60], "linf", [0.0], "fgsm", eot=1, batch_size=1000)
    assert ev.robust_accuracy(0.0) < ev.clean_accuracy
    assert "eps0-mismatch" in {f.code for f in ev.flags}
    steady = evaluate(trained_model(), x[:60], y[:60], "linf", [0.0, 0.05], "fgsm")
    assert steady.robust_accuracy(0.0) == steady.clean_accuracy
    assert "eps0-mismatch" not in {f.code for f in steady.flags}


def test_robust_accuracy_of_an_eps_not_evaluated_names_the_ones_that_were(data) -> None:
    x, y = data
    ev = evaluate(trained_model(), x[:20], y[:20], "linf", [0.0, 0.1], "fgsm")
    with pytest.raises(ValueError, match="0.3 was not evaluated: use one of 0, 0.1"):
        ev.robust_accuracy(0.3)


def test_a_model_without_parameters_is_evaluated_on_the_inputs_device(data) -> None:
    x, y = data

    class Pixels(nn.Module):  # logits = ten fixed pixels: no parameters, no buffers
        def forward(self, x):
            return x.flatten(1)[:, 20:30] * 10

    ev = evaluate(Pixels(), x[:20], y[:20], "linf", [0.1], "fgsm")
    assert 0.0 <= ev.robust_accuracy(0.1) <= ev.clean_accuracy


@pytest.mark.parametrize(
    "section,match",
    [
        ({"targeted": {"policy": "bogus"}}, "invalid target policy"),
        ({"targeted": {"policy": "all"}}, "success matrix"),
        ({"targeted": {"eps": ["abc"]}}, "invalid epsilon"),
        ({"targeted": {"eps": [-1]}}, "invalid epsilon"),
        ({"targeted": {"eps": [5.0]}}, "eps <= 1"),
        ({"targeted": {"eps": 0.1}}, "non-empty list"),
        ({"transfer": {"eps": "x"}}, "invalid epsilon"),
    ],
)
def test_suite_checks_targeted_and_transfer_settings_before_training(section, match) -> None:
    data = {"models": [{"arch": "lenet5"}], "threat": {"norm": "linf", "eps": [0.1]}, **section}
    with pytest.raises(RbcError, match=match):
        parse_plan(data)


def test_plan_attack_list_may_have_spaces() -> None:
    plan = parse_plan({"models": [{"arch": "lenet5"}], "whitebox": {"cascade": "pgd, fgsm"}})
    assert plan.cascade == "pgd, fgsm"


# --- suites with attacks that cannot run; models with too few classes for targeted APGD --------------------------
@pytest.mark.parametrize(
    "section",
    [
        {"targeted": {"attack": "apgd-ce"}},  # takes no targets
        {"targeted": {"attack": "cw-l2"}},  # l2 only, the suite is linf
        {"whitebox": {"cascade": "cw-l2"}},
        {"transfer": {"attack": "cw-l2", "eps": 0.1}},
    ],
)
def test_suite_rejects_attacks_that_cannot_run_before_any_training(section) -> None:
    data = {"models": [{"arch": "lenet5"}], "threat": {"norm": "linf", "eps": [0.1]}, **section}
    with pytest.raises(RbcError):
        parse_plan(data)


def _three_class_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_standard_suite_on_three_classes_leaves_out_targeted_apgd_and_flags_it() -> None:
    model, x, y = _three_class_model()
    ev = evaluate(model, x, y, "linf", [1e-4], "standard")  # nothing breaks: every attack of the cascade runs
    names = [a.name for a in ev.attacks]
    assert "apgd-t" not in names and "apgd-ce" in names and "square" in names
    assert [f.code for f in ev.flags].count("attacks-skipped") == 1


def test_autoattack_with_too_few_classes_is_a_clear_error() -> None:
    model, x, y = _three_class_model()
    attack = get_attack("autoattack", version="custom", attacks=["apgd-ce", "apgd-t"])
    with pytest.raises(ValueError, match="at least 4 classes"):  # was an IndexError inside pyautoattack
        attack(model, x, y, ThreatModel(Norm.LINF, 1e-4), seed=0)
