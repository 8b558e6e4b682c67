"""Transfer matrix: every model as source against every model as target (diagonal = white-box).

Each source crafts its adversarial examples once (per epsilon of the threat); each target then
classifies them through a labels-only oracle. The table is long: one row per (source, target).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_cnn.attacks import Attack
from robustbench_cnn.attacks.blackbox.oracle import Oracle
from robustbench_cnn.attacks.blackbox.transfer import _make_attack, craft_on_source, score_on_target
from robustbench_cnn.core.types import ThreatModel

__all__ = ["MATRIX_DTYPES", "matrix_wide", "transfer_matrix"]

#: Columns of :func:`transfer_matrix` and their dtypes.
MATRIX_DTYPES: dict[str, str] = {
    "source": "string",
    "target": "string",
    "attack": "string",
    "norm": "string",
    "eps": "float64",
    "targeted": "bool",
    "white_box": "bool",
    "n": "int64",
    "successes": "int64",
    "success_rate": "float64",
    "target_clean_acc": "float64",
    "source_success_rate": "float64",
    "queries": "int64",
}


def transfer_matrix(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack: str | Attack = "fgsm",
    *,
    attack_params: Mapping[str, Any] | None = None,
    targets: torch.Tensor | None = None,
    seed: int = 0,
    source_labels: str = "pred",
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Success rate of ``attack`` crafted on each model and transferred to each model.

    Args:
        models: name -> ``nn.Module`` (images in [0, 1] -> logits), all for the same data.
        x, y: images N x C x H x W in [0, 1] and int64 labels [N].
        threat: the norm ball the source attack works in.
        attack: a white-box registry name with ``attack_params``, or an Attack instance.
        targets: int64 target classes [N] for targeted transfer (else untargeted).

    Returns:
        ``len(models) ** 2`` rows with the columns of :data:`MATRIX_DTYPES`: ``n`` is the number of
        points the target classifies correctly (and, targeted, whose target differs from the label);
        ``success_rate = successes / n`` (NaN when n is 0); ``white_box`` marks the diagonal.
    """
    if len(models) < 1:
        raise ValueError("transfer_matrix needs at least one model")
    atk = _make_attack(attack, attack_params)
    n_points = x.shape[0]
    ids = torch.arange(n_points)
    oracles = {name: Oracle(model, "labels") for name, model in models.items()}
    clean = {name: oracle.labels(x, ids=ids) for name, oracle in oracles.items()}
    rows = []
    for src_name, src in models.items():
        crafted = craft_on_source(
            src, x, y, threat, atk, targets=targets, seed=seed, source_labels=source_labels, batch_size=batch_size
        )
        for tgt_name, oracle in oracles.items():
            res = score_on_target(
                oracle,
                x,
                y,
                crafted.x_adv.to(x.device),
                threat,
                clean_pred=clean[tgt_name],
                targets=targets,
                attack=f"transfer:{atk.name}",
            )
            attacked = int(res.queries.sum())  # one query per attacked point
            successes = int(res.success.sum())
            rows.append(
                {
                    "source": src_name,
                    "target": tgt_name,
                    "attack": atk.name,
                    "norm": threat.norm.value,
                    "eps": float(threat.eps),
                    "targeted": targets is not None,
                    "white_box": src_name == tgt_name,
                    "n": attacked,
                    "successes": successes,
                    "success_rate": successes / attacked if attacked else float("nan"),
                    "target_clean_acc": res.clean_accuracy,
                    "source_success_rate": crafted.success_rate,
                    "queries": attacked,
                }
            )
    return pd.DataFrame(rows, columns=list(MATRIX_DTYPES)).astype(MATRIX_DTYPES)


def matrix_wide(table: pd.DataFrame, value: str = "success_rate") -> pd.DataFrame:
    """The long table as a source x target grid (sources as rows, in first-seen order)."""
    order = list(dict.fromkeys(table["source"]))
    wide = table.pivot(index="source", columns="target", values=value)
    return wide.reindex(index=order, columns=list(dict.fromkeys(table["target"])))
