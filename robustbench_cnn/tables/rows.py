"""The one row builder and the one run-metadata builder of the results tables.

Every cell kind returns a :class:`CellResult`: plain records (one dict per summary row, one per sample) without
run metadata, optional named tables, and the metadata of the model it evaluated. The runner turns it into typed
frames here, once, for every kind:

- :func:`run_metadata`: schema version, run id, cell id, device, package versions, git sha, timestamp (also the
  head of ``run.json``);
- :func:`summary_frame` / :func:`samples_frame`: the records with that metadata and the model's, typed with
  :data:`~robustbench_cnn.tables.results.SUMMARY_SCHEMA` / ``SAMPLES_SCHEMA``; every summary row gets the 95%
  Clopper-Pearson interval of its clean and robust accuracy (:func:`accuracy_cis`);
- :func:`table_frame`: a named table stamped with the run and cell ids.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from robustbench_cnn.core.statistics import rate_ci
from robustbench_cnn.tables.results import (
    CI_COLUMNS,
    EXTRA_SUMMARY_COLUMNS,
    SAMPLES_SCHEMA,
    SCHEMA_VERSION,
    SUMMARY_SCHEMA,
    typed_frame,
)

__all__ = ["CellResult", "accuracy_cis", "run_metadata", "samples_frame", "summary_frame", "table_frame"]


@dataclass
class CellResult:
    """What one cell computed, as plain data (it travels back from a Ray worker by pickling).

    - ``summary``: one record per summary row (attack x eps, ...), without run metadata; a record may carry its
      own model columns (a cell that attacks several models), else ``model`` fills them;
    - ``samples``: one record per sample row (``sample_id``, ``eps``, ``robust``, ...);
    - ``tables``: other named tables (``transfer_matrix``, ``target_matrix``, ``history``), written beside the
      cell and concatenated over the run into ``<name>.parquet``;
    - ``model``: the evaluated model's metadata (``model``, ``checkpoint_sha256``, ``arch``, ``defense``, ``dataset``,
      ``split``);
    - ``device``: where the cell ran; ``info``: JSON-able facts for the caller (e.g. the checkpoint it trained).
    """

    summary: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def run_metadata(run_id: str, cell_id: str = "", device: str = "") -> dict[str, Any]:
    """The metadata of every row and of ``run.json``: ``schema_version``, ``run_id``, ``cell_id``, ``device``,
    ``versions`` (package -> version), ``git_sha`` (empty outside a checkout) and an ISO-8601 UTC ``timestamp``."""
    from robustbench_cnn.store import git_sha, package_versions

    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "cell_id": cell_id,
        "device": device,
        "versions": package_versions(),
        "git_sha": git_sha() or "",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _row_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with mappings (``versions``) as sorted JSON text: a table cell holds a string."""
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in meta.items()}


def accuracy_cis(record: dict[str, Any]) -> dict[str, float]:
    """The 95% Clopper-Pearson intervals of a summary record's accuracies: ``clean_acc_lo`` / ``clean_acc_hi`` and
    ``robust_acc_lo`` / ``robust_acc_hi`` (:func:`robustbench_cnn.core.statistics.rate_ci`).

    Both accuracies are fractions of all ``n`` evaluated points (a point the model misclassifies counts as
    neither clean-correct nor robust; the success rate, a fraction of the attacked points only, gets no interval
    here). A record without ``n`` or an accuracy gets NaN bounds."""
    n = record.get("n")
    n = int(n) if n is not None and not pd.isna(n) else 0
    out: dict[str, float] = {}
    for rate, (lo, hi) in CI_COLUMNS.items():
        value = record.get(rate)
        value = float(value) if value is not None and not pd.isna(value) else float("nan")
        out[lo], out[hi] = rate_ci(value, n)
    return out


def summary_frame(result: CellResult, meta: dict[str, Any]) -> pd.DataFrame:
    """The cell's summary rows: run metadata (:func:`run_metadata`), then the model's, then each record with the
    intervals of its accuracies (:func:`accuracy_cis`), typed with ``SUMMARY_SCHEMA`` plus the
    :data:`EXTRA_SUMMARY_COLUMNS` the records use."""
    head = _row_meta(meta)
    rows = []
    for record in result.summary:
        row = {**head, **result.model, **record}
        rows.append({**row, **accuracy_cis(row)})
    extra = {c: t for c, t in EXTRA_SUMMARY_COLUMNS.items() if any(c in r for r in result.summary)}
    return typed_frame(rows, {**SUMMARY_SCHEMA, **extra})


def samples_frame(result: CellResult, meta: dict[str, Any]) -> pd.DataFrame:
    """The cell's per-sample rows, typed with ``SAMPLES_SCHEMA`` (run id, cell id, model and dataset first)."""
    head = {
        "run_id": meta.get("run_id", ""),
        "cell_id": meta.get("cell_id", ""),
        "model": result.model.get("model", ""),
        "dataset": result.model.get("dataset", ""),
    }
    return typed_frame(({**head, **record} for record in result.samples), SAMPLES_SCHEMA)


def table_frame(table: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """A named table of the cell with ``run_id`` and ``cell_id`` set (in place when the table has the columns,
    else appended), as strings."""
    table = table.copy()
    for col in ("run_id", "cell_id"):
        table[col] = pd.Series([meta.get(col, "")] * len(table), index=table.index, dtype="string")
    return table
