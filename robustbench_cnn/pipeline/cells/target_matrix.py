"""``target-matrix``: the all-targets matrix of one targeted attack (target policy ``all``).

For each epsilon the attack is run towards every class; the cell's ``target_matrix`` table holds one row per true
class x target class (off the diagonal) with the success rate over the correctly classified points of the true
class (:func:`robustbench_cnn.evaluation.target_matrix.target_matrix_table`). It writes no summary rows.
"""

from __future__ import annotations

import os
from typing import Any

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["TargetMatrix", "target_matrix_cell"]


def target_matrix_cell(
    model: str,
    dataset: str,
    norm: str,
    eps: list[float],
    attack: str,
    *,
    attack_params: dict[str, Any] | None = None,
    n: int | None = 1000,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    model_def: str | None = None,
    weights: str | None = None,
) -> Cell:
    """A ``target-matrix`` cell: ``attack`` (a registered targeted attack) towards every class, at each of
    ``eps``, on ``model`` (store name or path; a label with a bring-your-own ``model_def``)."""
    return Cell(
        kind="target-matrix",
        model=model,
        dataset=dataset,
        params={
            "norm": norm,
            "eps": sorted(float(e) for e in eps),
            "attack": attack,
            "attack_params": dict(attack_params or {}),
            "targeted": True,
            "target_policy": "all",
            "model_def": model_def,
            "weights": weights,
        },
        n=n,
        seed=seed,
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


@CELL_KINDS.register("target-matrix")
class TargetMatrix(OneModelKind):
    """The true class x target class success matrix of one targeted attack, at each epsilon."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.attacks import get_attack

        attack = get_attack(cell.params["attack"], **cell.params.get("attack_params", {}))
        if not attack.supports_targeted:
            raise ValueError(f"attack {attack.name!r} does not support targets")

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.attacks import get_attack
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.evaluation.target_matrix import target_matrix_table

        p = cell.params
        device = resolve_device(cell.device)
        attack = get_attack(p["attack"], **p.get("attack_params", {}))
        net, meta, split = prepare_cell(cell, device)  # store checkpoint or model_def/weights
        table_meta = {
            "run_id": "",
            "model": meta["model"],
            "checkpoint_sha256": meta["checkpoint_sha256"],
            "dataset": cell.dataset,
        }
        table = target_matrix_table(
            net,
            split.x.to(device),
            split.y.to(device),
            p["norm"],
            p["eps"],
            attack,
            list(split.info.classes),
            table_meta,
            seed=cell.seed,
            batch_size=cell.batch_size,
        )
        return CellResult(tables={"target_matrix": table}, model=meta, device=str(device))
