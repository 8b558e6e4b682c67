"""The all-targets matrix (``--targeted --target-policy all``) as a long results table.

For each epsilon, one targeted attack is run towards every class; the table holds one row per true class x
target class (the diagonal is left out) with the success rate over the correctly classified points of the true
class (``n`` of them). The ``target-matrix`` cell kind writes it to the run folder as ``target_matrix.parquet``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_cnn.core.errors import RbcError

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


def wide_rows(table: pd.DataFrame, eps: float) -> list[dict[str, Any]]:
    """One epsilon of the long table as printable rows: true class x target class, targeted success in percent
    with one decimal (the report's unit), '-' where undefined."""
    part = table[table["eps"] == eps]
    num_classes = int(max(part["true_class"].max(), part["target_class"].max())) + 1 if len(part) else 0
    rates = {(int(r.true_class), int(r.target_class)): r.success_rate for r in part.itertuples()}
    labels = dict(zip(part["true_class"].astype(int), part["true_label"]))
    rows = []
    for i in range(num_classes):
        cells = {
            str(j): "-" if pd.isna(rates.get((i, j), pd.NA)) else f"{100 * float(rates[(i, j)]):.1f}"
            for j in range(num_classes)
        }
        rows.append({"true": labels.get(i, str(i)), **cells})
    return rows
