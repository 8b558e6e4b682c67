"""Per-sample outcomes behind a summary row, for paired comparisons (the leaderboard's McNemar marks, ``rbc regress
--mode paired``).

A summary row says "k of n points robust"; the per-sample table (``samples.parquet``) says which ones. Two rows
evaluated on the *same* points are compared with the paired exact McNemar test
(:func:`robustbench_cnn.core.statistics.mcnemar`), which is far more sensitive than comparing two intervals.

:class:`SampleIndex` finds a row's points: the samples of the row's ``cell_id`` at its ``eps`` (for a transfer row:
of its attack, and for a ``class:K`` target policy, of target K). A white-box cell stores the worst case of its
cascade per sample, with the attack that broke the point; the robust outcome after an earlier attack of the cascade
is rebuilt from that (a point broken by a *later* attack was still robust). The outcomes are used only when they
reproduce the row (same number of points, same clean and robust accuracy to half a point); otherwise the row has
no paired outcomes and :meth:`SampleIndex.outcomes` says why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_cnn.core.statistics import ALPHA, McNemarResult, mcnemar

__all__ = ["SampleIndex", "compare_outcomes", "read_samples", "samples_path"]

_EPS_DIGITS = 10
WORST_CASE = "worst-case"


def samples_path(path: str | os.PathLike) -> Path:
    """Where the per-sample table of a summary lives: ``<run>/samples.parquet`` for a run folder or its
    ``summary.parquet``, else the sibling ``<name>.samples.parquet`` (``results/baseline.parquet`` ->
    ``results/baseline.samples.parquet``, written by ``rbc regress --update``)."""
    path = Path(path)
    if path.is_dir():
        return path / "samples.parquet"
    if path.name == "summary.parquet":
        return path.parent / "samples.parquet"
    name = path.name[: -len(".parquet")] if path.name.endswith(".parquet") else path.name
    return path.with_name(f"{name}.samples.parquet")


def read_samples(path: str | os.PathLike) -> pd.DataFrame | None:
    """The per-sample table beside the summary at ``path`` (:func:`samples_path`), or None when there is none or it
    cannot be read or lacks the columns a paired test needs."""
    target = samples_path(path)
    if not target.is_file():
        return None
    try:
        frame = pd.read_parquet(target)
    except Exception:  # pyarrow raises several types for a broken file: then there are no paired samples
        return None
    needed = {"cell_id", "eps", "sample_id", "clean_correct", "robust"}
    return frame if needed <= set(frame.columns) and len(frame) else None


def _cascades(summary: pd.DataFrame) -> dict[tuple[str, float], list[str]]:
    """(cell id, eps) -> the cascade's attacks in order, from the ``worst-case`` rows' ``attack_params``."""
    out: dict[tuple[str, float], list[str]] = {}
    if "attack_params" not in summary.columns or "cell_id" not in summary.columns:
        return out
    rows = summary[summary["attack"].astype("string") == WORST_CASE]
    for cid, eps, params in rows[["cell_id", "eps", "attack_params"]].itertuples(index=False):
        try:
            order = json.loads(str(params))
        except (TypeError, ValueError):
            continue
        if isinstance(order, list):
            out[(str(cid), round(float(eps), _EPS_DIGITS))] = [str(a) for a in order]
    return out


class SampleIndex:
    """The per-sample table of one run (or baseline), indexed by cell and epsilon, beside its summary."""

    def __init__(self, samples: pd.DataFrame | None, summary: pd.DataFrame) -> None:
        self.groups: dict[tuple[str, float], pd.DataFrame] = {}
        if samples is not None and len(samples):
            frame = samples.copy()
            frame["_eps"] = pd.to_numeric(frame["eps"]).astype(float).round(_EPS_DIGITS)
            frame["cell_id"] = frame["cell_id"].astype("string").fillna("").astype(str)
            for (cid, eps), group in frame.groupby(["cell_id", "_eps"], sort=False):
                self.groups[(str(cid), float(eps))] = group
        self.cascades = _cascades(summary)

    def __bool__(self) -> bool:
        return bool(self.groups)

    def outcomes(self, row: Mapping[str, Any]) -> tuple[pd.DataFrame | None, str]:
        """The row's points: a frame indexed by ``sample_id`` with boolean ``clean_correct`` and ``robust``, and
        ``""``; or None and the reason there are none (no samples, ambiguous, or not reproducing the row)."""
        if not self.groups:
            return None, "no per-sample table"
        cid = "" if pd.isna(row.get("cell_id")) else str(row.get("cell_id") or "")
        eps = float(row["eps"])
        group = self.groups.get((cid, round(eps, _EPS_DIGITS))) if cid else None
        if group is None:
            return None, "no per-sample rows for this cell"
        attack = str(row.get("attack") or "")
        if str(row.get("attack_kind") or "") == "transfer":
            if "attack" in group.columns:
                group = group[group["attack"].astype("string") == attack]
            policy = str(row.get("target_policy") or "") if bool(row.get("targeted") or False) else ""
            if policy.startswith("class:") and "target" in group.columns:
                group = group[group["target"] == int(policy.split(":", 1)[1])]
        if not len(group) or group["sample_id"].duplicated().any():
            return None, "the per-sample rows do not single out this row"
        robust = group["robust"].astype("boolean").fillna(False).to_numpy(bool)
        order = self.cascades.get((cid, round(eps, _EPS_DIGITS)), [])
        if attack != WORST_CASE and attack in order and order.index(attack) < len(order) - 1 and "success" in group:
            # robust after this attack of the cascade = robust at the end, or broken only by a later attack
            later = group["attack"].astype("string").isin(order[order.index(attack) + 1 :]).to_numpy(bool)
            robust = robust | (group["success"].astype("boolean").fillna(False).to_numpy(bool) & later)
        clean = group["clean_correct"].astype("boolean").fillna(False).to_numpy(bool)
        frame = pd.DataFrame(
            {"clean_correct": clean, "robust": robust}, index=pd.Index(group["sample_id"].astype(int), name="sample_id")
        )
        m = len(frame)
        n = row.get("n")
        if n is not None and not pd.isna(n) and int(n) != m:
            return None, f"the per-sample rows hold {m} points, the row {int(n)}"
        for col, value in (("robust", "robust_acc"), ("clean_correct", "clean_acc")):
            want = row.get(value)
            want = float("nan") if want is None or pd.isna(want) else float(want)
            if not math.isfinite(want) or abs(frame[col].mean() - want) > 0.5 / m:
                return None, f"the per-sample rows do not reproduce the row's {value}"
        return frame.sort_index(), ""


def compare_outcomes(
    a: pd.DataFrame, b: pd.DataFrame, column: str = "robust", alpha: float = ALPHA
) -> McNemarResult | None:
    """The paired exact McNemar test of ``column`` between two :meth:`SampleIndex.outcomes` frames (``only_a``: the
    points where A is true and B false), or None when they are not over the same points."""
    if len(a) != len(b) or not np.array_equal(a.index.to_numpy(), b.index.to_numpy()):
        return None
    return mcnemar(a[column].to_numpy(bool), b[column].to_numpy(bool), alpha)
