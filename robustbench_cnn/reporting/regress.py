"""Regression check for CI: compare a results table with a baseline, cell by cell.

A cell is one row of the summary table, keyed by :data:`KEY` (model, dataset, cascade, attack, norm, eps,
targeted, target_policy); a table written before the ``suite`` column became ``cascade`` (such as an older
committed baseline) is read with that column renamed. For each cell, clean and robust accuracy are compared in percentage points:

- ``regressed``: either one dropped by more than the tolerance (or became missing, NaN);
- ``improved``: either one rose by more than the tolerance, and none dropped beyond it;
- ``ok``: both within the tolerance;
- ``missing``: in the baseline, not in the current results;
- ``resized``: in both, but evaluated on another number of points (``n``): the accuracies are not comparable;
- ``new``: in the current results only.

The exit code is 1 when any cell regressed, is missing or resized, else 0 (new and improved cells pass: ``--update``
records them). A malformed baseline raises :class:`~robustbench_cnn.core.errors.RbcError` (exit code 2).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.tables.results import SUMMARY_SCHEMA, atomic_write_parquet, with_cascade

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


@dataclass
class RegressionReport:
    """The cell-by-cell comparison: ``table`` has the key, baseline/current values, deltas (pp) and status."""

    table: pd.DataFrame
    tolerance_pp: float
    counts: dict[str, int] = field(default_factory=dict)

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
        return f"{', '.join(parts) or 'no cells'} (tolerance {self.tolerance_pp:g} pp, {len(self.table)} cells)"

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
    frame = frame.astype({c: t for c, t in SUMMARY_SCHEMA.items() if c in frame.columns})
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


def update_baseline(current: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``current`` as the new baseline at ``path`` (atomically; the summary schema, sorted by cell)."""
    path = Path(path)
    if path.is_dir():
        raise RbcError(f"baseline {path} is a folder: --update writes a parquet file, e.g. {path}.parquet")
    frame = _validate(current, "current results", "table").reset_index(drop=True)
    for col, dtype in SUMMARY_SCHEMA.items():
        if col not in frame.columns:
            frame[col] = pd.Series(pd.NA, index=frame.index, dtype=dtype)
    frame = frame[list(SUMMARY_SCHEMA)]
    order = _keyed(frame).sort_values(KEY).index
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


def compare(baseline: pd.DataFrame, current: pd.DataFrame, tolerance_pp: float = 1.0) -> RegressionReport:
    """Compare ``current`` with ``baseline`` cell by cell (see the module docstring for the statuses).

    ``tolerance_pp``: the change in percentage points (of clean or robust accuracy) a cell may show and
    still be ``ok``; a change of exactly the tolerance passes.
    """
    if not tolerance_pp >= 0:
        raise ValueError(f"invalid tolerance {tolerance_pp!r}: must be >= 0 percentage points")
    base = _validate(baseline, "baseline", "table")
    cur = _validate(current, "current results", "table")

    def side(frame: pd.DataFrame, prefix: str, marker: str) -> pd.DataFrame:
        keyed = _keyed(frame)
        for col in VALUES:
            keyed[f"{prefix}_{col}"] = pd.to_numeric(frame[col]).astype(float)
        keyed[f"{prefix}_n"] = frame["n"].astype("Int64") if "n" in frame.columns else pd.NA
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
        "note",
    ]
    table = merged[cols].astype({"status": "string", "note": "string"})
    counts = {s: int((table["status"] == s).sum()) for s in STATUSES}
    return RegressionReport(table, float(tolerance_pp), counts)


@dataclass
class BaselineUpdate:
    """What :func:`refresh_baseline` did: the baseline it wrote (``path``, ``cells`` rows), the comparison with
    the baseline it replaced (``None`` when there was none, or it was unreadable) and, for an unreadable one,
    why it could not be read."""

    path: Path
    cells: int
    previous: RegressionReport | None = None
    unreadable: str | None = None


def refresh_baseline(current: pd.DataFrame, baseline: str | os.PathLike, tolerance_pp: float = 1.0) -> BaselineUpdate:
    """``rbc regress --update``: compare ``current`` with the baseline at ``baseline`` when one exists and can be
    read (a malformed one is what this repairs: its error is returned, not raised), then write ``current`` there
    as the new baseline (:func:`update_baseline`)."""
    old, unreadable = None, None
    if Path(baseline).exists():
        try:
            old = load_baseline(baseline)
        except RbcError as exc:
            unreadable = str(exc)
    previous = compare(old, current, tolerance_pp) if old is not None else None
    path = update_baseline(current, baseline)
    return BaselineUpdate(path, len(current), previous, unreadable)


__all__ = [
    "FAILING",
    "KEY",
    "VALUES",
    "BaselineUpdate",
    "RegressionReport",
    "compare",
    "load_baseline",
    "load_current",
    "refresh_baseline",
    "update_baseline",
]
