"""The all-targets matrix (``--targeted --target-policy all``) as a long results table in a run folder.

For each epsilon, one targeted attack is run towards every class; ``target_matrix.parquet`` holds one row
per true class x target class (the diagonal is left out) with the success rate over the correctly
classified points of the true class (``n`` of them). ``run.json`` records the configuration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_cnn.core.errors import RbcError

MATRIX_FILE = "target_matrix.parquet"

#: Columns of ``target_matrix.parquet`` and their dtypes.
TARGET_MATRIX_SCHEMA: dict[str, str] = {
    "run_id": "string",
    "model": "string",
    "checkpoint_sha256": "string",
    "dataset": "string",
    "attack": "string",
    "attack_params": "string",
    "norm": "string",
    "eps": "Float64",
    "true_class": "Int64",
    "target_class": "Int64",
    "true_label": "string",
    "target_label": "string",
    "success_rate": "Float64",
    "n": "Int64",
    "seed": "Int64",
}


def matrix_rows(
    matrix: torch.Tensor, counts: Sequence[int], eps: float, labels: Sequence[str], meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """Long-format rows (true class x target class, off the diagonal) of one epsilon's matrix."""
    rows = []
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if i == j:
                continue
            rate = float(matrix[i, j])
            rows.append(
                {
                    **meta,
                    "eps": eps,
                    "true_class": i,
                    "target_class": j,
                    "true_label": labels[i] if i < len(labels) else str(i),
                    "target_label": labels[j] if j < len(labels) else str(j),
                    "success_rate": None if rate != rate else rate,
                    "n": counts[i] if i < len(counts) else 0,
                }
            )
    return rows


def target_matrix_table(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: str,
    eps_list: Sequence[float],
    attack: Any,
    labels: Sequence[str],
    meta: dict[str, Any],
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The all-targets matrix of ``attack`` at each epsilon as one long, typed table."""
    from robustbench_cnn.core.model_utils import batched_logits, eval_mode
    from robustbench_cnn.core.types import Norm, ThreatModel
    from robustbench_cnn.evaluation.engine import evaluate_all_targets
    from robustbench_cnn.tables.results import typed_frame

    row_meta = {
        **meta,
        "attack": attack.name,
        "attack_params": json.dumps(attack.params, sort_keys=True, default=str),
        "norm": norm,
        "seed": seed,
    }
    with eval_mode(model):  # one clean pass: the denominators and every epsilon's matrix share it
        logits = batched_logits(model, x, batch_size)
    if logits is None:
        raise RbcError("no images to evaluate")
    correct, y_cpu = (logits.argmax(dim=1) == y).cpu(), y.cpu()
    counts = [int((correct & (y_cpu == i)).sum()) for i in range(logits.shape[1])]
    rows: list[dict[str, Any]] = []
    for eps in eps_list:
        matrix = evaluate_all_targets(
            model,
            x,
            y,
            ThreatModel(Norm.parse(norm), eps),
            attack,
            seed=seed,
            batch_size=batch_size,
            clean_logits=logits,
        )
        rows += matrix_rows(matrix, counts, float(eps), labels, row_meta)
    return typed_frame(rows, TARGET_MATRIX_SCHEMA)


def check_run_folder(run_dir: Path, resume: bool) -> None:
    """Refuse a folder that already holds files unless resuming (results are never silently mixed), and a path
    that cannot be a run folder (:meth:`RunStore.check_fresh`: an existing file, not creatable)."""
    from robustbench_cnn.tables.results import RunStore

    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise RbcError(
            f"run folder {run_dir} already holds results: pass --resume to overwrite its target "
            f"matrix, or choose another --out"
        )
    RunStore(run_dir).check_fresh(resume=True)


def write_target_matrix(run_dir: str | os.PathLike, table: pd.DataFrame, config: dict[str, Any]) -> Path:
    """Write ``run.json`` and ``target_matrix.parquet`` (each atomically) into ``run_dir``; returns the table path."""
    from robustbench_cnn.tables.results import RunStore, atomic_write_parquet

    store = RunStore(run_dir)
    try:
        store.write_run_json(config)
        path = store.dir / MATRIX_FILE
        atomic_write_parquet(table, path)
    except OSError as exc:
        raise RbcError(f"cannot write the run folder {store.dir}: {exc.strerror or exc}") from None
    return path


def wide_rows(table: pd.DataFrame, eps: float) -> list[dict[str, Any]]:
    """One epsilon of the long table as printable rows: true class x target class ('-' where undefined)."""
    part = table[table["eps"] == eps]
    num_classes = int(max(part["true_class"].max(), part["target_class"].max())) + 1 if len(part) else 0
    rates = {(int(r.true_class), int(r.target_class)): r.success_rate for r in part.itertuples()}
    labels = dict(zip(part["true_class"].astype(int), part["true_label"]))
    rows = []
    for i in range(num_classes):
        cells = {
            str(j): "-" if pd.isna(rates.get((i, j), pd.NA)) else f"{float(rates[(i, j)]):.2f}"
            for j in range(num_classes)
        }
        rows.append({"true": labels.get(i, str(i)), **cells})
    return rows
