"""Confidence intervals and the paired McNemar test (robustbench_cnn.core.statistics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustbench_cnn.core.statistics import format_ci, mcnemar, mcnemar_counts, proportion_ci, rate_ci

SIMULATIONS = 2000
# The coverage estimated from SIMULATIONS draws has a binomial standard error of sqrt(0.95 * 0.05 / 2000) = 0.0049;
# three of them (0.0146) is the slack below the nominal 95% a correct interval may show by chance.
SLACK = 3 * math.sqrt(0.95 * 0.05 / SIMULATIONS)


@pytest.mark.parametrize("method", ["exact", "wilson"])
@pytest.mark.parametrize("true_rate", [0.05, 0.3, 0.5, 0.83, 0.97])
def test_interval_contains_the_true_rate_at_the_nominal_frequency(method: str, true_rate: float) -> None:
    """A seeded simulation: n = 450 points (the digits test split), SIMULATIONS draws of the robust count."""
    n = 450
    counts = np.random.default_rng(0).binomial(n, true_rate, size=SIMULATIONS)
    values, times = np.unique(counts, return_counts=True)  # one interval per distinct count
    covered = 0
    for k, many in zip(values, times, strict=True):
        lo, hi = proportion_ci(int(k), n, method=method)
        covered += int(many) * (lo <= true_rate <= hi)
    coverage = covered / SIMULATIONS
    assert coverage >= 0.95 - SLACK, f"{method} interval covered the true rate {coverage:.3f} of the time"
    if method == "exact":  # Clopper-Pearson is conservative by construction, never far above nominal either
        assert coverage <= 1.0


def test_interval_shape() -> None:
    lo, hi = proportion_ci(0, 100)
    assert lo == 0.0 and 0.0 < hi < 0.05  # no robust point: the interval still admits a small rate
    lo, hi = proportion_ci(100, 100)
    assert hi == 1.0 and 0.95 < lo < 1.0
    assert all(math.isnan(v) for v in proportion_ci(0, 0))
    narrow, wide = proportion_ci(500, 1000), proportion_ci(50, 100)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]  # more points, narrower interval
    assert rate_ci(0.5, 100) == proportion_ci(50, 100)
    with pytest.raises(ValueError, match="need 0 <= k <= n"):
        proportion_ci(5, 4)
    with pytest.raises(ValueError, match="use one of exact, wilson"):
        proportion_ci(1, 4, method="wald")


def test_format_ci() -> None:
    lo, hi = proportion_ci(393, 450)
    text = format_ci(393 / 450, lo, hi)
    assert text.startswith("87.3 ±") and float(text.split("±")[1]) > 0
    assert format_ci(float("nan"), 0, 1) == ""


def test_mcnemar_marks_a_real_difference_and_not_noise() -> None:
    """A constructed pair on 400 points: B breaks 30 points A keeps (and A none of B's) -> significant; a pair whose
    discordant points split 12 / 10 -> not significant."""
    a = np.ones(400, dtype=bool)
    b = a.copy()
    b[:30] = False
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b) == (30, 0) and result.significant and result.p_value < 1e-8
    noisy_a = np.ones(400, dtype=bool)
    noisy_b = noisy_a.copy()
    noisy_a[:10] = False  # robust only under B
    noisy_b[10:22] = False  # robust only under A
    noise = mcnemar(noisy_a, noisy_b)
    assert (noise.only_a, noise.only_b) == (12, 10) and not noise.significant
    assert mcnemar_counts(0, 0).p_value == 1.0  # identical outcomes
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar([True], [True, False])
