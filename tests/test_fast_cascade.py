"""The default cascade ``fast``: at least as strong as pyautoattack standard per sample, its native APGD against the
library's, the Square check's budget growth, and its randomized variant.

Planted model: the tiny digits net of ``attack_fixtures`` with its logits multiplied by 1000, so the float32 softmax
saturates and the cross-entropy gradient is exactly zero at most points (gradient masking, as defensive
distillation): APGD-CE alone leaves ~97% robust, the targeted DLR stage and Square must do the work.
Measured (1 thread, seed 0 and 1, 100 held-out points, linf 0.1): on the plain and the masked net, AutoAttack
standard and ``fast`` both end at 41% robust, and there is no point that AutoAttack breaks and ``fast`` misses
(0 of 400 point comparisons); ``fast`` took 0.15-0.22x AutoAttack's time. The test runs the masked net on 30
points (AutoAttack ~10 s of it unloaded) and allows 0 such points: both attacks are seeded, and 0 is what was
measured.
"""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import held_out, trained_model
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.square_check import SquareCheck
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.evaluation.engine import CASCADES, DEFAULT_CASCADE, RANDOMIZED_VARIANTS, evaluate

EPS = 0.1


class Scaled(nn.Module):
    """``k * model(x)``: the same decisions, a saturated softmax."""

    def __init__(self, model: nn.Module, k: float) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.k


class Noisy(nn.Module):
    """``model(x + sigma * e)`` with fresh noise on every call: a randomized model."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


def test_fast_is_the_default_and_keeps_the_square_check() -> None:
    assert DEFAULT_CASCADE == "fast"
    names = [name for name, _ in CASCADES[DEFAULT_CASCADE]]
    assert names[0] == "apgd" and "apgd-mt" in names and names[-1] == "square-check"
    assert RANDOMIZED_VARIANTS[DEFAULT_CASCADE] in CASCADES


def test_fast_breaks_every_point_autoattack_breaks_on_a_masked_net() -> None:
    torch.set_num_threads(1)
    model = Scaled(trained_model(), 1000.0).eval()
    x, y = held_out(30)
    threat = ThreatModel.parse(f"linf:{EPS}")
    aa = get_attack("autoattack")(model, x, y, threat, seed=0)
    aa_robust = aa.clean_correct & ~aa.success
    ev = evaluate(model, x, y, "linf", [EPS], seed=0)  # the default cascade
    assert ev.cascade == DEFAULT_CASCADE
    ours = ev.outcomes[-1].robust
    missed = int((~aa_robust & ours).sum())
    assert missed == 0, f"AutoAttack breaks {missed} point(s) that the default cascade misses"
    # the masking is real: the cross-entropy stage alone leaves most points robust, the targeted stage breaks them
    assert ev.outcomes[-1].cumulative_robust[0] >= 0.8 > ev.robust_accuracy() + 0.3
    assert "zero-gradients" in {f.code for f in ev.flags}


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_native_apgd_matches_pyautoattack(loss: str) -> None:
    # measured on 297 points at eps 0.05 and 0.1: identical robust accuracy (0.8586 / 0.5387 ce, 0.862 / 0.5623 dlr)
    model = trained_model()
    x, y = held_out(100)
    threat = ThreatModel.parse(f"linf:{EPS}")
    ours = get_attack("apgd", loss=loss)(model, x, y, threat, seed=0)
    lib = get_attack(f"apgd-{loss}")(model, x, y, threat, seed=0)
    assert abs(ours.robust_accuracy - lib.robust_accuracy) <= 0.01  # one point of 100: both are randomized
    assert ours.robust_accuracy < ours.clean_accuracy  # it does break points


def test_apgd_mt_with_malt_targets_matches_nine_logit_targets() -> None:
    model = trained_model()
    x, y = held_out(50)
    threat = ThreatModel.parse(f"linf:{EPS}")
    three = get_attack("apgd-mt")(model, x, y, threat, seed=0)
    nine = get_attack("apgd-mt", n_target_classes=9, ranking="logits")(model, x, y, threat, seed=0)
    assert int((three.success != nine.success).sum()) <= 1  # measured: equal on 297 points at eps 0.05 and 0.1


def test_square_check_grows_only_where_the_short_run_breaks_points() -> None:
    model = trained_model()
    x, y = held_out(30)
    weak = ThreatModel.parse("linf:0.01")  # nothing breaks: the short budget is all that is spent
    res = get_attack("square-check", n_queries=50, n_queries_full=200)(model, x, y, weak, seed=0)
    attacked = res.clean_correct
    assert int(res.queries[attacked].max()) <= 51  # the initial stripes are one query more (pyautoattack counts it)
    strong = ThreatModel.parse("linf:0.3")  # the short run breaks points: the survivors get the full budget
    res = get_attack("square-check", n_queries=5, n_queries_full=200)(model, x, y, strong, seed=0)
    survivors = res.clean_correct & ~res.success
    assert res.success.any()
    if survivors.any():
        assert int(res.queries[survivors].min()) > 5


@pytest.mark.parametrize("threat", ["linf:0.05", "l2:0.5"])
def test_square_check_runs_autoattacks_square_and_abandons_it_exactly(threat: str) -> None:
    """The check is AutoAttack's Square run, number for number: abandoned after the short budget it returns what a
    run of that budget returns (so the state it follows is the library's), grown it returns the full run's."""
    model = trained_model()
    x, y = held_out(40)
    tm = ThreatModel.parse(threat)

    def run(name: str, **params):
        res = get_attack(name, **params)(model, x, y, tm, seed=0)
        return res.x_adv, res.queries

    short = run("square", n_queries=60)
    abandoned = run("square-check", n_queries=60, n_queries_full=300, grow_if=10**6)
    assert torch.equal(abandoned[0], short[0]) and torch.equal(abandoned[1], short[1])
    full = run("square", n_queries=300)
    grown = run("square-check", n_queries=60, n_queries_full=300, grow_if=1)
    broke_early = int((model(short[0]).argmax(1) != y).sum()) - int((model(x).argmax(1) != y).sum())
    assert broke_early >= 1  # the short budget breaks points here, so the run goes on
    assert torch.equal(grown[0], full[0]) and torch.equal(grown[1], full[1])
    with pytest.raises(ValueError, match="n_queries <= n_queries_full"):
        get_attack("square-check", n_queries=400, n_queries_full=300)


def test_a_randomized_model_runs_the_rand_variant_with_eot() -> None:
    model = Noisy(trained_model(), 0.05).eval()
    x, y = held_out(20)
    ev = evaluate(model, x, y, "linf", [EPS], seed=0, eot=2)
    assert [a.name for a in ev.attacks] == ["apgd", "apgd"]
    assert [a.params["loss"] for a in ev.attacks] == ["ce", "dlr"]
    assert all(a.params["eot_iter"] == 2 for a in ev.attacks)
    eot = [f for f in ev.flags if f.code == "eot"]
    assert eot and "ran fast-rand" in eot[0].message


class _AscendingSquareCheck(SquareCheck):
    """The Square check as it ran before it walked the curve downwards: on the growing ball at every epsilon."""

    curve_order = "ascending"


def test_the_square_check_walks_the_curve_downwards() -> None:
    """Along a curve the check runs from the largest epsilon down and skips, at a smaller epsilon, the points it
    left unbroken at the larger one; the gradient stage stays on the growing ball."""
    torch.set_num_threads(1)
    model = trained_model()
    x, y = held_out(60)
    eps = [0.02, 0.05, 0.1]
    params = {"n_queries": 100, "n_queries_full": 200}
    down = evaluate(model, x, y, "linf", eps, [("pgd", {"steps": 10}), SquareCheck(**params)], seed=0)
    up = evaluate(model, x, y, "linf", eps, [("pgd", {"steps": 10}), _AscendingSquareCheck(**params)], seed=0)
    checked = [o.steps[-1].queries > 0 for o in down.outcomes]
    for k in range(len(eps) - 1):
        # never checked again below an epsilon where the point is robust after the check
        assert not (checked[k] & down.outcomes[k + 1].robust).any()
        assert (down.outcomes[k + 1].robust <= down.outcomes[k].robust).all()  # robust at eps => robust below
    assert checked[0].any()  # points the gradient stage broke only at a larger epsilon are checked here
    spent_down = sum(int(o.steps[-1].queries.sum()) for o in down.outcomes)
    spent_up = sum(int(o.steps[-1].queries.sum()) for o in up.outcomes)
    assert spent_down < 0.6 * spent_up  # measured: 5858 vs 14039 queries (0.42)
    for d, u in zip(down.outcomes, up.outcomes):  # measured: equal at every epsilon (96.7, 90.0, 45.0%)
        assert abs(int(d.robust.sum()) - int(u.robust.sum())) <= 1  # a point: the runs see other mini-batches
