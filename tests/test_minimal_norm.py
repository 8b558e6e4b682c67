"""Minimal-norm attacks (fmn, fab, ddn) and the robustness curve derived from their per-sample norms.

The analytic case: a 2-class model whose decision is the sign of ``f(x) = w.x + b``. Any adversarial
perturbation ``delta`` needs ``|w.delta| >= |f(x)|``, so by Hoelder's inequality its L2 norm is at least
``|f|/||w||_2``, its Linf norm at least ``|f|/||w||_1`` and its L1 norm at least ``|f|/||w||_inf``; the
perturbations along ``w``, ``sign(w)`` and the largest ``|w_i|`` reach these bounds, and they stay inside
[0, 1] for the inputs below (pixels in [0.4, 0.6], distances < 0.4 per coordinate, checked).
"""

from __future__ import annotations

import math

import pytest
import torch
from attack_fixtures import held_out, trained_model
from torch import nn

from robustbench_cnn.attacks import ATTACKS, get_attack
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel
from robustbench_cnn.evaluation.minimal_norm import (
    MinimalNorms,
    compare_minimal_norm,
    is_minimal_norm,
    minimal_norm_attacks,
)

MINIMAL = ["ddn", "fab", "fmn"]

#: Absolute slack of the lower bound ||delta|| >= d: float32 rounding of x + delta is at most 2^-24 (6e-8) per
#: pixel, i.e. <= 64 * 6e-8 = 3.8e-6 on a norm of 64 pixels (the L1 worst case), plus the logit's own rounding
#: (64 products of size <= 3, ~1e-5 on f, divided by ||w|| >= 2: 5e-6 on the distance): 1e-5 covers both.
LOWER_ATOL = 1e-5
#: Upper bounds from each algorithm on a linear boundary (each bounds the *first* adversarial iterate, and an
#: attack only ever keeps a smaller one):
#: - FAB: it projects onto the (exact) linearised boundary and overshoots by eta = 1.05, so its first iterate
#:   lies on the optimal ray at eta * d;
#: - DDN / FMN: the radius is multiplied by 1 - gamma after an adversarial iterate and 1 + gamma otherwise
#:   (gamma <= 0.05), so the last adversarial radius before a non-adversarial one is below d / (1 - gamma).
UPPER = {"fab": 1.05, "ddn": 1 / (1 - 0.05), "fmn": 1 / (1 - 0.05)}


class LinearTwoClass(nn.Module):
    """Logits ``(-g/2, g/2)`` with ``g = f`` (linear) or ``g = asinh(f)``: both decide by the sign of ``f``.

    FMN estimates the distance to the boundary as ``|g| / ||grad g||``, which is exact for a linear ``g``: its
    iterate then lands *on* the boundary, where float rounding decides the class (10-35 % of the points stayed
    unbroken in trials). ``asinh`` keeps the boundary (same zero set, so the same analytic distances) and makes that estimate
    overshoot slightly, so FMN crosses it, as it does on curved networks.
    """

    def __init__(self, w: torch.Tensor, b: float, curved: bool) -> None:
        super().__init__()
        self.register_buffer("w", w)
        self.b, self.curved = b, curved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1) @ self.w + self.b
        g = torch.asinh(f) if self.curved else f
        return torch.stack([-g / 2, g / 2], dim=1)


def linear_case() -> tuple[torch.Tensor, torch.Tensor, float, dict[Norm, torch.Tensor]]:
    """(x, w, b, analytic distance per norm) for points 0.03 <= L2 distance (all < 0.4 per coordinate)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, generator=gen)
    x = 0.4 + 0.2 * torch.rand(80, 1, 8, 8, generator=gen)
    f0 = x.flatten(1) @ w
    b = float(-f0.median()) + 0.01
    f = (f0 + b).abs()
    keep = f / w.norm() > 0.03
    x, f = x[keep], f[keep]
    dist = {Norm.L2: f / w.norm(), Norm.LINF: f / w.abs().sum(), Norm.L1: f / w.abs().max()}
    assert keep.sum() >= 20 and dist[Norm.L1].max() < 0.4  # the optimal perturbations stay inside [0, 1]
    return x, w, b, dist


ANALYTIC = [
    ("fab", Norm.L2, {}, False),
    ("fab", Norm.LINF, {}, False),
    ("fab", Norm.L1, {}, False),
    ("ddn", Norm.L2, {}, False),
    ("fmn", Norm.LINF, {}, True),
    ("fmn", Norm.L1, {}, True),
    ("fmn", Norm.L2, {"l2_projection": True}, True),
]


@pytest.mark.parametrize(
    "name, norm, params, curved",
    [pytest.param(*case, id=f"{case[0]}-{case[1].value}") for case in ANALYTIC],
)
def test_minimal_norm_reproduces_the_linear_boundary_distance(name, norm, params, curved) -> None:
    x, w, b, dist = linear_case()
    model = LinearTwoClass(w, b, curved)
    y = model(x).argmax(1)
    bound = {Norm.L2: 5.0, Norm.LINF: 0.5, Norm.L1: 20.0}[norm]  # far above every distance: never binding
    res = get_attack(name, **params)(model, x, y, ThreatModel(norm, bound), seed=0)
    d = dist[norm]
    assert res.success.all(), f"{name} left {int((~res.success).sum())} point(s) unbroken"
    found = res.perturbation_norm
    assert (found >= d - LOWER_ATOL).all(), "no adversarial example can be closer than the boundary"
    assert (found <= d * UPPER[name] + LOWER_ATOL).all(), (found / d).max()


def test_minimal_norm_attacks_declare_it() -> None:
    assert set(MINIMAL) <= set(minimal_norm_attacks())
    assert minimal_norm_attacks("l2") == ["ddn", "fab", "fmn"] and minimal_norm_attacks("l0") == ["fmn"]
    for name in MINIMAL:
        assert is_minimal_norm(ATTACKS.get(name)) and is_minimal_norm(get_attack(name))
    assert not is_minimal_norm(ATTACKS.get("pgd")) and not is_minimal_norm(get_attack("deepfool"))


BOUNDED = [pytest.param(name, norm, id=f"{name}-{norm.value}") for name in MINIMAL for norm in ATTACKS.get(name).norms]
SMALL_EPS = {Norm.LINF: 0.05, Norm.L2: 0.3, Norm.L1: 1.0, Norm.L0: 3.0}


@pytest.mark.parametrize("name, norm", BOUNDED)
def test_minimal_norm_attack_respects_the_bound_and_the_box(name: str, norm: Norm) -> None:
    """With a bound below many points' minimal norm: x_adv in the ball and [0, 1], only real successes."""
    model = trained_model()
    x, y = held_out(24)
    threat = ThreatModel(norm, SMALL_EPS[norm])
    res = get_attack(name, steps=30) if name != "fab" else get_attack(name, n_iter=30, n_restarts=2)
    res = res(model, x, y, threat, seed=1)
    delta = res.x_adv - x
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (norm.measure(delta) <= threat.eps + 1e-6).all()
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.success, res.clean_correct & (pred != y))
    assert res.success.any() and (res.clean_correct & ~res.success).any(), "the bound must bind for some points"
    norms = MinimalNorms.from_result(res)
    assert torch.equal(norms.robust(threat.eps), res.robust)  # the curve at the bound is the run itself


def _result(success, clean_correct, norms, eps) -> AttackResult:
    n = len(success)
    return AttackResult(
        x_adv=torch.zeros(n, 1, 2, 2),
        success=torch.tensor(success),
        clean_correct=torch.tensor(clean_correct),
        perturbation_norm=torch.tensor(norms, dtype=torch.float32),
        pred_adv=torch.zeros(n, dtype=torch.int64),
        target=torch.full((n,), -1),
        queries=torch.zeros(n, dtype=torch.int64),
        threat=ThreatModel(Norm.L2, eps),
        attack="fmn",
    )


def test_curve_equals_the_fraction_computed_by_hand() -> None:
    # 8 points: 2 misclassified, 4 broken at norms 0.5, 1.0, 1.5, 2.0, 2 robust up to the bound 2.0
    res = _result(
        [False, False, True, True, True, True, False, False],
        [False, False, True, True, True, True, True, True],
        [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 1.7],  # unbroken points' norms (projected tries) are ignored
        2.0,
    )
    curve = MinimalNorms.from_result(res)
    # robust at eps <=> clean-correct and (not broken or norm > eps); the ball is closed
    by_hand = {0.0: 6 / 8, 0.25: 6 / 8, 0.5: 5 / 8, 0.99: 5 / 8, 1.0: 4 / 8, 1.5: 3 / 8, 1.9: 3 / 8, 2.0: 2 / 8}
    assert curve.curve(by_hand) == sorted(by_hand.items())
    assert torch.equal(curve.broken, torch.tensor([False, False, True, True, True, True, False, False]))
    with pytest.raises(ValueError, match=r"eps 2.5 is above the bound 2"):
        curve.robust_accuracy(2.5)
    # the per-sample best of two runs
    other = MinimalNorms.from_result(
        _result(
            [False, False, True, False] + [False] * 3 + [True],
            [False, False] + [True] * 6,
            [0, 0, 0.7, 0, 0, 0, 0, 0.3],
            1.0,
        )
    )
    best = MinimalNorms.best([curve, other])
    assert best.bound == 1.0 and best.attack == "fmn+fmn"
    assert best.norms.tolist() == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, math.inf, pytest.approx(0.3)]


def test_curve_from_a_run_is_monotone_and_starts_at_clean_accuracy() -> None:
    model = trained_model()
    x, y = held_out(60)
    res = get_attack("fmn")(model, x, y, ThreatModel.parse("linf:0.3"), seed=0)
    curve = MinimalNorms.from_result(res)
    points = curve.curve([0.3 * i / 60 for i in range(61)])
    accs = [acc for _, acc in points]
    assert accs[0] == res.clean_accuracy and accs[-1] == res.robust_accuracy
    assert all(b <= a for a, b in zip(accs, accs[1:])), "a robustness curve never goes up"
    assert accs[-1] < accs[0], "the attack must break points within the bound"


def test_comparison_table_on_the_same_points() -> None:
    model = trained_model()
    x, y = held_out(40)
    eps = [0.02 * i for i in range(1, 9)]
    comp = compare_minimal_norm(
        model, x, y, "linf", eps, minimal_attacks=["fmn", ("fab", {"n_iter": 50})], growing_ball="pgd"
    )
    rows = comp.rows()
    assert [r["eps"] for r in rows] == eps and all(r["n"] == 40 for r in rows)
    for row in rows:
        # the reported figure is the per-sample worst case: at most either method's own robust accuracy
        assert row["reported_robust"] <= min(row["minimal_norm_robust"], row["growing_ball_robust"])
        assert row["minimal_norm_robust"] <= min(row["robust_fmn"], row["robust_fab(n_iter=50)"])
        assert row["minimal_norm_s"] > 0 and row["growing_ball_s"] > 0
        assert row["minimal_norm_cpu_s"] > 0 and row["growing_ball_cpu_s"] > 0
    assert [r["minimal_norm_robust"] for r in rows] == sorted((r["minimal_norm_robust"] for r in rows), reverse=True)
    assert rows[-1]["reported_robust"] < rows[0]["clean_accuracy"]
    ratios = {r["attack"]: r for r in comp.attack_rows()}
    assert set(ratios) == {"fmn", "fab(n_iter=50)"}  # runs are labelled with their non-default parameters
    for r in ratios.values():  # each attack's norm over the best of any: >= 1, and found points are within the bound
        assert r["mean_ratio_to_best"] >= 1.0 and 0 < r["found_share"] <= 1
    # on every point some attack found the best norm, so the per-sample min of the ratios is exactly 1
    stacked = torch.stack([run.norms for run in comp.runs])
    broken = comp.best.broken
    assert torch.equal(stacked[:, broken].amin(0), comp.best.norms[broken])


def test_comparison_rejects_non_minimal_attacks_and_unsupported_norms() -> None:
    model = trained_model()
    x, y = held_out(4)
    with pytest.raises(ValueError, match=r"attack 'pgd' is not a minimal-norm attack: use one of ddn, fab, fmn"):
        compare_minimal_norm(model, x, y, "linf", [0.1], minimal_attacks=["pgd"])
    with pytest.raises(ValueError, match=r"attack 'ddn' does not support norm linf"):
        compare_minimal_norm(model, x, y, "linf", [0.1], minimal_attacks=["ddn"])
    with pytest.raises(ValueError, match=r"given twice with the same parameters: fmn, fmn"):
        compare_minimal_norm(model, x, y, "l2", [0.1], minimal_attacks=["fmn", ("fmn", {})])
    with pytest.raises(ValueError, match="no epsilons given"):
        compare_minimal_norm(model, x, y, "l2", [])
