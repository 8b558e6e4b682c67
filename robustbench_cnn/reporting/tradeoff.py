"""The clean/robust trade-off table of the defended models in a store (one row per checkpoint).

A *defended* checkpoint is one whose card names a threat model (``rbc defend`` always records it;
``rbc train`` does not). The table reads only model cards: training cost and clean accuracy from the
card, the last-epoch PGD accuracy from ``extra["pgd_accuracy"]`` (written by ``defend``), and the
standard-suite robust accuracy from ``extra["suite_robust_accuracy"]`` when an evaluation recorded it
there (a float at the card's threat, or a mapping ``{"linf:0.3": 0.91, ...}``), else NaN. The model's robust
accuracy (``robust_accuracy`` with ``robust_n`` and its 95% CI) is ``rbc defend``'s end-of-training evaluation with
the default cascade (``extra["final_eval"]``), else that suite figure; ``training_flags`` names the collapse and
masking events of training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_cnn.core.statistics import rate_ci
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.store import ModelCard, list_checkpoints

#: Where an evaluation records the robust accuracy of the standard suite in a model card's ``extra``.
SUITE_ROBUST_KEY = "suite_robust_accuracy"

#: Columns and dtypes of the trade-off table.
TRADEOFF_COLUMNS: dict[str, str] = {
    "checkpoint": "string",
    "defense": "string",
    "architecture": "string",
    "dataset": "string",
    "threat": "string",
    "epochs": "int64",
    "train_time_s": "float64",
    "epoch_time_s": "float64",
    "clean_accuracy": "float64",
    "pgd_accuracy": "float64",
    "pgd_steps": "Int64",
    "pgd_n": "Int64",
    "suite_robust_accuracy": "float64",
    "suite_n": "Int64",  # the points that figure was measured on
    "guard_fired": "boolean",
    "guard_restored_epoch": "Int64",
    "robust_accuracy": "float64",  # the model's robust accuracy: the end-of-training evaluation, else the suite's
    "robust_ci_lo": "float64",  # its 95% Clopper-Pearson interval
    "robust_ci_hi": "float64",
    "robust_n": "Int64",
    "robust_cascade": "string",
    "training_flags": "string",  # masking / collapse events of training (the leaderboard's training flags)
    "seed": "int64",
    "created": "string",
}


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _suite_accuracy(card: ModelCard) -> float:
    value = card.extra.get(SUITE_ROBUST_KEY)
    if isinstance(value, dict):
        value = value.get(card.threat or "", value.get(_threat_key(card.threat)))
    return _float(value)


def _suite_n(card: ModelCard) -> int | None:
    """The sample count of the recorded standard-cascade figure (``extra["suite_robust_meta"]`` at the card's
    threat, else the card's last ``suite_eval`` n), None when nothing is recorded."""
    if math.isnan(_suite_accuracy(card)):
        return None
    meta = card.extra.get("suite_robust_meta") or {}
    entry = meta.get(card.threat or "") or meta.get(_threat_key(card.threat)) or {}
    n = entry.get("n", (card.extra.get("suite_eval") or {}).get("n"))
    return None if n is None else int(n)


def _robust(card: ModelCard) -> dict[str, Any]:
    """The model's robust accuracy with n, 95% CI and cascade: ``rbc defend``'s end-of-training evaluation
    (``extra["final_eval"]``), else the recorded suite figure (its CI from its n), else NaN."""
    final = (card.extra or {}).get("final_eval") or {}
    if final.get("robust_accuracy") is not None:
        lo, hi = final.get("ci95") or rate_ci(float(final["robust_accuracy"]), int(final["n"]))
        return {
            "robust_accuracy": float(final["robust_accuracy"]),
            "robust_ci_lo": float(lo),
            "robust_ci_hi": float(hi),
            "robust_n": int(final["n"]),
            "robust_cascade": final.get("cascade"),
        }
    acc, n = _suite_accuracy(card), _suite_n(card)
    if math.isnan(acc) or n is None:
        return {"robust_accuracy": acc, "robust_ci_lo": math.nan, "robust_ci_hi": math.nan, "robust_n": n}
    lo, hi = rate_ci(acc, n)
    cascade = (card.extra.get("suite_eval") or {}).get("suite", "standard")
    return {"robust_accuracy": acc, "robust_ci_lo": lo, "robust_ci_hi": hi, "robust_n": n, "robust_cascade": cascade}


def _training_flags(card: ModelCard) -> str:
    """The codes of the training events the card records (``guard-collapse``, ``monitor-masking``, ...)."""
    extra = card.extra or {}
    codes = {
        f"guard-{e.get('event')}" for e in ((extra.get("defense_report") or {}).get("guard") or {}).get("events") or []
    }
    if (extra.get("monitor_masking") or {}).get("events"):
        codes.add("monitor-masking")
    if (extra.get("final_eval") or {}).get("monitor_overstated"):
        codes.add("monitor-overstated")
    return ";".join(sorted(codes))


def _row(card: ModelCard) -> dict[str, Any]:
    extra = card.extra or {}
    monitor = extra.get("pgd_monitor") or {}
    guard = (extra.get("defense_report") or {}).get("guard")
    return {
        "checkpoint": card.name,
        "defense": card.recipe,
        "architecture": card.arch,
        "dataset": card.dataset,
        "threat": card.threat,
        "epochs": int(card.epochs),
        "train_time_s": _float(card.train_time_s),
        "epoch_time_s": _float(extra.get("epoch_time_s")),
        "clean_accuracy": _float(card.clean_accuracy),
        "pgd_accuracy": _float(extra.get("pgd_accuracy")),
        "pgd_steps": monitor.get("steps"),
        "pgd_n": monitor.get("n"),
        "suite_robust_accuracy": _suite_accuracy(card),
        "suite_n": _suite_n(card),
        "guard_fired": None if guard is None else bool(guard.get("fired")),
        "guard_restored_epoch": None if guard is None else guard.get("restored_epoch"),
        "seed": int(card.seed),
        "created": card.created,
        **_robust(card),
        "training_flags": _training_flags(card),
    }


def record_suite_accuracy(
    checkpoint: str | os.PathLike,
    summary: pd.DataFrame,
    store: str | os.PathLike | None = None,
    suite: str = "standard",
) -> dict[str, float]:
    """Record the untargeted worst-case robust accuracy of the cascade ``suite`` from a run's ``summary`` in the
    card of ``checkpoint``: :func:`robustbench_cnn.pipeline.workflows.record_cascade_accuracy` (the evaluate
    workflow records it; this name stays for callers of the trade-off table)."""
    from robustbench_cnn.pipeline.workflows import record_cascade_accuracy

    return record_cascade_accuracy(checkpoint, summary, store, suite)


def _threat_key(threat: str | None) -> str:
    """The canonical ``str(ThreatModel)`` form (``linf:0.30`` -> ``linf:0.3``, ``linf:0.0313725...`` ->
    ``linf:8/255``), so a card's threat and a summary's norm and eps name the same entry."""
    try:
        return str(ThreatModel.parse_ball(threat or ""))
    except ValueError:
        return threat or ""


def tradeoff_table(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per defended checkpoint of ``store`` (see :data:`TRADEOFF_COLUMNS`), sorted by
    dataset, threat, architecture and defense."""
    rows = [_row(card) for card in list_checkpoints(store) if card.threat]
    frame = pd.DataFrame(rows, columns=list(TRADEOFF_COLUMNS)).astype(TRADEOFF_COLUMNS)
    return frame.sort_values(["dataset", "threat", "architecture", "defense", "checkpoint"], ignore_index=True)


def write_tradeoff_table(store: str | os.PathLike | None, path: str | os.PathLike) -> pd.DataFrame:
    """Write :func:`tradeoff_table` to ``path`` (parquet, or CSV when the name ends in ``.csv``)."""
    frame = tradeoff_table(store)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return frame
