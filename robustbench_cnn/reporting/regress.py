"""Regression check for CI: compare a results table with a baseline, cell by cell.

A cell is one row of the summary table, keyed by :data:`KEY` (model, dataset, cascade, attack, norm, eps,
targeted, target_policy); a table written before the ``suite`` column became ``cascade`` (such as an older
committed baseline) is read with that column renamed. For each cell, clean and robust accuracy are compared in
percentage points:

- ``regressed``: either one dropped by more than the tolerance (or became missing, NaN);
- ``improved``: either one rose by more than the tolerance, and none dropped beyond it;
- ``ok``: both within the tolerance;
- ``missing``: in the baseline, not in the current results;
- ``resized``: in both, but evaluated on another number of points (``n``): the accuracies are not comparable;
- ``new``: in the current results only.

The exit code is 1 when any cell regressed, is missing or resized, else 0 (new and improved cells pass: ``--update``
records them). A malformed baseline raises :class:`~robustbench_cnn.core.errors.RbcError` (exit code 2).

Two rules decide ``regressed`` / ``improved`` / ``ok`` (``mode``):

- ``tolerance`` (default): the change in percentage points against ``tolerance_pp``. For exact reproducibility,
  e.g. CI with pinned numerics, where any change beyond rounding is a bug.
- ``paired``: the paired exact McNemar test (:mod:`robustbench_cnn.core.statistics`) on the per-sample outcomes of
  the same points in the baseline and the current run (:mod:`robustbench_cnn.reporting.paired`): a cell regresses
  only when its points lost robustness (or clean correctness) significantly, two-sided at ``alpha`` with Holm's
  step-down correction over the cell tests that have discordant points (a test without any can never be
  significant). For comparing runs where noise is expected (another machine, library version or seed). It needs
  the per-sample tables (a run folder's ``samples.parquet``, or ``<baseline>.samples.parquet`` beside a summary
  parquet, written by ``--update``); a cell without paired samples falls back to the tolerance rule and its note
  says so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.statistics import ALPHA
from robustbench_cnn.reporting.paired import SampleIndex, compare_outcomes, read_samples, samples_path
from robustbench_cnn.tables.results import SUMMARY_SCHEMA, atomic_write_parquet, with_cascade, with_ci_columns

#: What identifies a cell across runs.
KEY = ["model", "dataset", "cascade", "attack", "norm", "eps", "targeted", "target_policy"]
#: The compared values.
VALUES = ["clean_acc", "robust_acc"]
STATUSES = ("regressed", "missing", "resized", "improved", "new", "ok")
#: The statuses that fail the check (exit code 1).
FAILING = ("regressed", "missing", "resized")
_STRING_KEYS = ["model", "dataset", "cascade", "attack", "norm", "target_policy"]
_EPS_DIGITS = 10  # epsilons match when equal to 10 decimals (8/255 written by two runs is the same cell)
_SLACK = 1e-9  # a change of exactly the tolerance passes
#: The rules that decide whether a cell regressed (see the module docstring).
MODES = ("tolerance", "paired")


@dataclass
class RegressionReport:
    """The cell-by-cell comparison: ``table`` has the key, baseline/current values, deltas (pp) and status."""

    table: pd.DataFrame
    tolerance_pp: float
    counts: dict[str, int] = field(default_factory=dict)
    mode: str = "tolerance"
    alpha: float = ALPHA
    #: paired mode: the McNemar tests in Holm's family, and the compared cells that fell back to the tolerance rule
    tests: int = 0
    fallback: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if any(self.counts.get(s, 0) for s in FAILING) else 0

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def changed(self) -> pd.DataFrame:
        """The cells whose status is not ``ok``, worst first."""
        return self.table[self.table["status"] != "ok"]

    def counts_text(self) -> str:
        parts = [f"{self.counts.get(s, 0)} {s}" for s in STATUSES if self.counts.get(s, 0)]
        if self.mode == "paired":
            rule = (
                f"paired McNemar at alpha {self.alpha:g}, Holm over {self.tests} test(s); "
                f"{self.fallback} cell(s) without paired samples by tolerance {self.tolerance_pp:g} pp"
            )
        else:
            rule = f"tolerance {self.tolerance_pp:g} pp"
        return f"{', '.join(parts) or 'no cells'} ({rule}, {len(self.table)} cells)"

    def summary_line(self) -> str:
        return f"regression check {'passed' if self.passed else 'FAILED'}: {self.counts_text()}"


# ------------------------------------------------------------------------------------------ loading


def _validate(frame: pd.DataFrame, what: str, path: object) -> pd.DataFrame:
    """Check the key and value columns and their dtypes; return the frame with the schema's dtypes (a legacy
    ``suite`` column read as ``cascade``)."""
    frame = with_cascade(frame)
    missing = [c for c in KEY + VALUES if c not in frame.columns]
    if missing:
        raise RbcError(f"{what} {path} is not a results summary: it lacks the columns {', '.join(missing)}")
    wrong = []
    for col in _STRING_KEYS:
        s = frame[col]
        if not (ptypes.is_string_dtype(s) or (s.dtype == object and s.dropna().map(type).eq(str).all())):
            wrong.append(f"{col} ({s.dtype}, expected text)")
    for col in ["eps", *VALUES]:
        if not ptypes.is_numeric_dtype(frame[col]) or ptypes.is_bool_dtype(frame[col]):
            wrong.append(f"{col} ({frame[col].dtype}, expected a number)")
    if not ptypes.is_bool_dtype(frame["targeted"]) and not (
        frame["targeted"].dtype == object and frame["targeted"].dropna().map(type).eq(bool).all()
    ):
        wrong.append(f"targeted ({frame['targeted'].dtype}, expected a boolean)")
    if wrong:
        raise RbcError(f"{what} {path} has columns of the wrong type: {', '.join(wrong)}")
    frame = with_ci_columns(frame.astype({c: t for c, t in SUMMARY_SCHEMA.items() if c in frame.columns}))
    _check_unique(frame, what, path)
    return frame


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The key columns normalized for matching (NA text -> "", NA targeted -> False, eps rounded)."""
    out = pd.DataFrame({c: frame[c].astype("string").fillna("").astype(str) for c in _STRING_KEYS}, index=frame.index)
    out["targeted"] = frame["targeted"].astype("boolean").fillna(False).astype(bool)
    out.loc[~out["targeted"], "target_policy"] = ""
    out["eps"] = pd.to_numeric(frame["eps"]).astype(float).round(_EPS_DIGITS)
    return out[KEY]


def _check_unique(frame: pd.DataFrame, what: str, path: object) -> None:
    keys = _keyed(frame)
    dup = keys.duplicated(keep=False)
    if dup.any():
        first = keys[dup].iloc[0].to_dict()
        cell = ", ".join(f"{k}={v}" for k, v in first.items())
        raise RbcError(
            f"{what} {path} has {int(dup.sum())} rows for the same cells (e.g. {cell}): compare one run at a time"
        )


def _read(path: str | os.PathLike, what: str) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / "summary.parquet"
    if not path.exists():
        hint = " (write one with: rbc regress --update --baseline PATH --current RUN_DIR)" if what == "baseline" else ""
        raise RbcError(f"{what} {path} does not exist{hint}")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not parquet
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RbcError(f"{what} {path} is not a readable parquet file: {reason}") from None
    return _validate(frame, what, path)


def load_baseline(path: str | os.PathLike) -> pd.DataFrame:
    """Read a baseline (a summary parquet, or a run folder's ``summary.parquet``) and validate it.

    Raises :class:`RbcError` (exit code 2) when it does not exist, is not parquet, lacks key or value
    columns, has columns of the wrong type, or holds the same cell twice.
    """
    return _read(path, "baseline")


def load_current(path: str | os.PathLike) -> pd.DataFrame:
    """Read the current results (a run folder or a summary parquet), validated as :func:`load_baseline`."""
    return _read(path, "current results")


def load_samples(path: str | os.PathLike) -> pd.DataFrame | None:
    """The per-sample table of a baseline or current results at ``path`` (a run folder's ``samples.parquet``, or
    the sibling ``<name>.samples.parquet`` of a summary parquet), or None when there is none."""
    return read_samples(path)


def update_baseline(current: pd.DataFrame, path: str | os.PathLike, samples: pd.DataFrame | None = None) -> Path:
    """Write ``current`` as the new baseline at ``path`` (atomically; the summary schema, sorted by cell), and its
    per-sample table ``samples`` beside it as ``<name>.samples.parquet`` for ``--mode paired``. Without
    ``samples``, a per-sample file left there by an older baseline is removed (it would describe other results)."""
    path = Path(path)
    if path.is_dir():
        raise RbcError(f"baseline {path} is a folder: --update writes a parquet file, e.g. {path}.parquet")
    frame = _validate(current, "current results", "table").reset_index(drop=True)
    for col, dtype in SUMMARY_SCHEMA.items():
        if col not in frame.columns:
            frame[col] = pd.Series(pd.NA, index=frame.index, dtype=dtype)
    frame = frame[list(SUMMARY_SCHEMA)]
    order = _keyed(frame).sort_values(KEY).index
    sibling = samples_path(path)
    if samples is not None and len(samples):
        atomic_write_parquet(samples.reset_index(drop=True), sibling)
    else:
        sibling.unlink(missing_ok=True)
    atomic_write_parquet(frame.loc[order].reset_index(drop=True), path)
    return path


# ------------------------------------------------------------------------------------------ comparing


def _status(row: pd.Series, tol: float) -> str:
    if not row["_base"]:
        return "new"
    if not row["_cur"]:
        return "missing"
    b_n, c_n = row["baseline_n"], row["current_n"]
    if pd.notna(b_n) and pd.notna(c_n) and b_n != c_n:
        return "resized"
    dropped = rose = False
    for col in VALUES:
        b, c = row[f"baseline_{col}"], row[f"current_{col}"]
        b_nan, c_nan = math.isnan(b), math.isnan(c)
        if b_nan and c_nan:
            continue
        if c_nan:
            dropped = True
        elif b_nan:
            rose = True
        else:
            delta = 100.0 * (c - b)
            dropped |= delta < -tol - _SLACK
            rose |= delta > tol + _SLACK
    return "regressed" if dropped else "improved" if rose else "ok"


def _holm(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which of ``pvalues`` are significant at family-wise level ``alpha``."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    significant = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        significant[i] = True
    return significant


def _paired_statuses(
    merged: pd.DataFrame,
    base: pd.DataFrame,
    cur: pd.DataFrame,
    base_samples: pd.DataFrame | None,
    cur_samples: pd.DataFrame | None,
    alpha: float,
) -> tuple[int, int]:
    """Decide the compared cells of ``merged`` (in place: ``status``, ``note``, ``rule``, ``p_clean``, ``p_robust``)
    by the paired McNemar test with Holm's correction; cells without paired outcomes keep their tolerance status and
    say so. Returns (tests in Holm's family, cells that fell back)."""
    base_index, cur_index = SampleIndex(base_samples, base), SampleIndex(cur_samples, cur)
    tests: list[tuple[int, str, float, bool]] = []  # (merged row, value, p, dropped)
    paired_rows: list[int] = []
    fallback = 0
    for i, row in merged.iterrows():
        if row["status"] in ("new", "missing", "resized"):
            continue
        b_out, why = base_index.outcomes(base.loc[int(row["_base_row"])].to_dict())
        c_out, why_c = cur_index.outcomes(cur.loc[int(row["_cur_row"])].to_dict())
        results, reason = None, f"baseline: {why}" if b_out is None else f"current: {why_c}"
        if b_out is not None and c_out is not None:
            results = {c: compare_outcomes(b_out, c_out, c, alpha) for c in ("clean_correct", "robust")}
            if any(r is None for r in results.values()):
                results, reason = None, "baseline and current are not over the same points"
        if results is None:
            fallback += 1
            merged.at[i, "note"] = f"no paired samples ({reason}): tolerance rule"
            continue
        paired_rows.append(i)
        merged.at[i, "rule"] = "paired"
        notes = []
        for col, res in results.items():
            short = "clean" if col == "clean_correct" else "robust"
            merged.at[i, f"p_{short}"] = res.p_value
            if res.discordant:  # only_a: true in the baseline, false now (lost); only_b: gained
                tests.append((i, short, res.p_value, res.only_a > res.only_b))
                notes.append(f"{short}: {res.only_a} lost, {res.only_b} gained, McNemar p={res.p_value:.2g}")
        merged.at[i, "note"] = "; ".join(notes)
    significant = _holm([p for _, _, p, _ in tests], alpha)
    dropped = {i for (i, _, _, down), sig in zip(tests, significant) if sig and down}
    rose = {i for (i, _, _, down), sig in zip(tests, significant) if sig and not down}
    for i in paired_rows:
        merged.at[i, "status"] = "regressed" if i in dropped else "improved" if i in rose else "ok"
    return len(tests), fallback


def compare(
    baseline: pd.DataFrame,
    current: pd.DataFrame,
    tolerance_pp: float = 1.0,
    *,
    mode: str = "tolerance",
    baseline_samples: pd.DataFrame | None = None,
    current_samples: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> RegressionReport:
    """Compare ``current`` with ``baseline`` cell by cell (see the module docstring for the statuses and modes).

    ``tolerance_pp``: the change in percentage points (of clean or robust accuracy) a cell may show and
    still be ``ok``; a change of exactly the tolerance passes. ``mode``: ``"tolerance"`` (default) or
    ``"paired"``; the latter reads ``baseline_samples`` / ``current_samples`` (per-sample tables,
    :func:`load_samples`) and tests at family-wise level ``alpha`` (default 0.05).
    """
    if not tolerance_pp >= 0:
        raise ValueError(f"invalid tolerance {tolerance_pp!r}: must be >= 0 percentage points")
    if mode not in MODES:
        raise ValueError(f"invalid mode {mode!r}: use one of {', '.join(MODES)}")
    if not 0 < alpha < 1:
        raise ValueError(f"invalid alpha {alpha!r}: must be between 0 and 1")
    base = _validate(baseline, "baseline", "table").reset_index(drop=True)
    cur = _validate(current, "current results", "table").reset_index(drop=True)

    def side(frame: pd.DataFrame, prefix: str, marker: str) -> pd.DataFrame:
        keyed = _keyed(frame)
        for col in VALUES:
            keyed[f"{prefix}_{col}"] = pd.to_numeric(frame[col]).astype(float)
        keyed[f"{prefix}_n"] = frame["n"].astype("Int64") if "n" in frame.columns else pd.NA
        keyed[f"{marker}_row"] = frame.index  # where the row is, for its per-sample outcomes
        keyed[marker] = True
        return keyed

    merged = side(base, "baseline", "_base").merge(side(cur, "current", "_cur"), on=KEY, how="outer", sort=False)
    for marker in ("_base", "_cur"):
        merged[marker] = merged[marker].astype("boolean").fillna(False).astype(bool)
    for col in VALUES:
        short = col.split("_")[0]
        merged[f"delta_{short}_pp"] = 100.0 * (merged[f"current_{col}"] - merged[f"baseline_{col}"])
    merged["status"] = (
        merged.apply(_status, axis=1, tol=float(tolerance_pp)) if len(merged) else pd.Series(dtype="string")
    )
    resized = merged["status"] == "resized"
    merged["note"] = ""
    merged.loc[resized, "note"] = [
        f"n {b} -> {c}" for b, c in merged.loc[resized, ["baseline_n", "current_n"]].itertuples(index=False)
    ]
    merged["rule"] = "tolerance"
    merged["p_clean"] = float("nan")
    merged["p_robust"] = float("nan")
    tests = fallback = 0
    if mode == "paired":
        for col in ("note", "rule"):
            merged[col] = merged[col].astype(object)
        tests, fallback = _paired_statuses(merged, base, cur, baseline_samples, current_samples, alpha)
    rank = {s: i for i, s in enumerate(STATUSES)}
    merged["_rank"] = merged["status"].map(rank)
    merged = merged.sort_values(["_rank", *KEY], kind="mergesort").reset_index(drop=True)
    cols = KEY + [
        "baseline_clean_acc",
        "current_clean_acc",
        "delta_clean_pp",
        "baseline_robust_acc",
        "current_robust_acc",
        "delta_robust_pp",
        "status",
        "rule",
        "p_clean",
        "p_robust",
        "note",
    ]
    table = merged[cols].astype({"status": "string", "rule": "string", "note": "string"})
    counts = {s: int((table["status"] == s).sum()) for s in STATUSES}
    return RegressionReport(table, float(tolerance_pp), counts, mode, float(alpha), tests, fallback)


@dataclass
class BaselineUpdate:
    """What :func:`refresh_baseline` did: the baseline it wrote (``path``, ``cells`` rows), the comparison with
    the baseline it replaced (``None`` when there was none, or it was unreadable) and, for an unreadable one,
    why it could not be read."""

    path: Path
    cells: int
    previous: RegressionReport | None = None
    unreadable: str | None = None


def refresh_baseline(
    current: pd.DataFrame,
    baseline: str | os.PathLike,
    tolerance_pp: float = 1.0,
    samples: pd.DataFrame | None = None,
) -> BaselineUpdate:
    """``rbc regress --update``: compare ``current`` with the baseline at ``baseline`` when one exists and can be
    read (a malformed one is what this repairs: its error is returned, not raised), then write ``current`` there
    as the new baseline, with its per-sample table ``samples`` beside it (:func:`update_baseline`)."""
    old, unreadable = None, None
    if Path(baseline).exists():
        try:
            old = load_baseline(baseline)
        except RbcError as exc:
            unreadable = str(exc)
    previous = compare(old, current, tolerance_pp) if old is not None else None
    path = update_baseline(current, baseline, samples)
    return BaselineUpdate(path, len(current), previous, unreadable)


__all__ = [
    "FAILING",
    "KEY",
    "MODES",
    "VALUES",
    "BaselineUpdate",
    "RegressionReport",
    "compare",
    "load_baseline",
    "load_current",
    "load_samples",
    "refresh_baseline",
    "update_baseline",
]
