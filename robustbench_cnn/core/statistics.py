"""Uncertainty of the figures: binomial confidence intervals and the paired exact McNemar test.

Every accuracy the harness reports is a binomial proportion (k of n points robust), so it carries a confidence
interval; two models (or two runs) evaluated on the *same* points are compared with the paired exact McNemar test,
which looks only at the discordant points (robust under one, broken under the other). Both come from
:mod:`scipy.stats` (``binomtest``); nothing here is hand-rolled statistics.

- :func:`proportion_ci`: Clopper-Pearson ("exact", the default: coverage is at least the nominal level for every
  true rate) or Wilson score interval, default level 95%.
- :func:`mcnemar`: the exact (binomial) McNemar test on paired boolean outcomes, two-sided, default level 5%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

#: The level of every reported interval and of the significance marks.
CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
CI_METHODS = ("exact", "wilson")
#: What the ``±`` of :func:`format_ci` is, for table legends.
PLUS_MINUS = f"± the larger distance to an end of the {CONFIDENCE:.0%} Clopper-Pearson interval"


def proportion_ci(k: int, n: int, confidence: float = CONFIDENCE, method: str = "exact") -> tuple[float, float]:
    """Two-sided confidence interval of a binomial proportion ``k / n``.

    Args:
        k: successes (e.g. points still robust), ``0 <= k <= n``.
        n: trials (points evaluated); ``n == 0`` gives ``(nan, nan)``.
        confidence: the level, default 0.95.
        method: ``"exact"`` (Clopper-Pearson, default) or ``"wilson"`` (score interval, narrower, nominal on average).
    """
    if method not in CI_METHODS:
        raise ValueError(f"invalid interval method {method!r}: use one of {', '.join(CI_METHODS)}")
    k, n = int(k), int(n)
    if n == 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"invalid proportion {k}/{n}: need 0 <= k <= n")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method=method)
    return (float(ci.low), float(ci.high))


def rate_ci(rate: float, n: int, confidence: float = CONFIDENCE, method: str = "exact") -> tuple[float, float]:
    """:func:`proportion_ci` of a rate that is a fraction of ``n`` points (``k = round(rate * n)``); NaN rate or
    ``n == 0`` gives ``(nan, nan)``."""
    if n is None or rate is None or not math.isfinite(float(rate)) or int(n) <= 0:
        return (math.nan, math.nan)
    return proportion_ci(round(float(rate) * int(n)), int(n), confidence, method)


@dataclass(frozen=True)
class McNemarResult:
    """The paired comparison of A and B on the same points.

    ``only_a``: points robust under A and broken under B; ``only_b``: the reverse; ``p_value``: two-sided exact
    McNemar (binomial test of ``only_a`` among the discordant points at 1/2); ``significant``: ``p_value < alpha``.
    """

    n: int
    only_a: int
    only_b: int
    p_value: float
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b


def mcnemar_counts(only_a: int, only_b: int, n: int | None = None, alpha: float = ALPHA) -> McNemarResult:
    """The exact McNemar test from the two discordant counts (``n`` is only recorded)."""
    only_a, only_b = int(only_a), int(only_b)
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    return McNemarResult(n if n is not None else discordant, only_a, only_b, min(p, 1.0), alpha)


def mcnemar(a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray, alpha: float = ALPHA) -> McNemarResult:
    """The paired exact McNemar test of two boolean outcomes per point (e.g. robust under model A / model B, or
    under the baseline / the current run), which must be over the same points in the same order."""
    a_arr, b_arr = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired outcomes differ in length: {a_arr.size} vs {b_arr.size} points")
    only_a = int((a_arr & ~b_arr).sum())
    only_b = int((~a_arr & b_arr).sum())
    return mcnemar_counts(only_a, only_b, int(a_arr.size), alpha)


def format_ci(rate: float, lo: float, hi: float) -> str:
    """``87.3 ±2.1`` (percent, one decimal; ± the larger distance from the rate to an end of the interval, which is
    asymmetric near 0 and 1)."""
    if rate is None or not math.isfinite(float(rate)):
        return ""
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return f"{100 * rate:.1f}"
    half = max(float(rate) - float(lo), float(hi) - float(rate))
    return f"{100 * rate:.1f} ±{100 * half:.1f}"
