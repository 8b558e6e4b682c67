"""``transfer-matrix``: every model as source against every model as target (the diagonal is white-box).

:func:`robustbench_cnn.attacks.blackbox.matrix.transfer_matrix` at one threat model; the cell's
``transfer_matrix`` table has one row per (source, target) with the dataset, the number of evaluation points
(``n_points``, kept disjoint from the seed set of any substitute among the models) and the seed. It writes no
summary rows.
"""

from __future__ import annotations

import os
from typing import Any

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellKind, CellResult, load_store_model, store_weights
from robustbench_cnn.pipeline.cells.transfer import disjoint_n

__all__ = ["TransferMatrix", "check_matrix", "transfer_matrix_cell"]


def transfer_matrix_cell(
    models: list[str],
    dataset: str,
    threat: str,
    attack: str = "fgsm",
    *,
    attack_params: dict[str, Any] | None = None,
    n: int | None = 1000,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``transfer-matrix`` cell over ``models`` (store checkpoints) at ``threat`` (``NORM:EPS``)."""
    from robustbench_cnn.core.types import ThreatModel

    tm = ThreatModel.parse_ball(threat)
    return Cell(
        kind="transfer-matrix",
        model=",".join(models),
        dataset=dataset,
        params={
            "models": list(models),
            "attack": attack,
            "attack_params": dict(attack_params or {}),
            "norm": tm.norm.value,
            "eps": float(tm.eps),
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def check_matrix(models: list[str], attack: str, attack_params: dict[str, Any] | None = None) -> None:
    """A transfer matrix needs two distinct models at least and a white-box source attack (``ValueError``)."""
    from robustbench_cnn.attacks.blackbox.transfer import _make_attack

    if len(set(models)) != len(models):
        raise ValueError("--models lists a checkpoint twice")
    if len(models) < 2:
        raise ValueError(
            f"--models needs at least 2 checkpoints (got {len(models)}): a transfer matrix "
            f"crafts on each model and tests on the others"
        )
    _make_attack(attack, attack_params)


@CELL_KINDS.register("transfer-matrix")
class TransferMatrix(CellKind):
    """Success of one attack crafted on each model against each model."""

    def check(self, cell: Cell) -> None:
        check_matrix(cell.params["models"], cell.params["attack"], cell.params.get("attack_params"))

    def weights(self, cell: Cell) -> str:
        return store_weights(list(cell.params["models"]), cell.store)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.attacks.blackbox.matrix import transfer_matrix
        from robustbench_cnn.attacks.blackbox.transfer import _make_attack
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.core.types import Norm, ThreatModel
        from robustbench_cnn.data import load_split

        p = cell.params
        device = resolve_device(cell.device)
        loaded = [load_store_model(name, cell, device) for name in p["models"]]
        total = len(load_split(cell.dataset, "test", data_dir=cell.data_dir))
        n_eff = disjoint_n(cell.n, total, [card for _, card in loaded], cell.dataset)
        data = load_split(cell.dataset, "test", n=n_eff, data_dir=cell.data_dir)
        models = {card.name: model for model, card in loaded}
        attack = _make_attack(p["attack"], p.get("attack_params"))
        threat = ThreatModel(Norm.parse(p["norm"]), float(p["eps"]))
        table = transfer_matrix(models, data.x.to(device), data.y.to(device), threat, attack, seed=cell.seed)
        table.insert(0, "dataset", cell.dataset)
        table = table.assign(n_points=n_eff, seed=cell.seed).astype(
            {"dataset": "string", "n_points": "int64", "seed": "int64"}
        )
        return CellResult(tables={"transfer_matrix": table}, device=str(device), info={"n": n_eff})
