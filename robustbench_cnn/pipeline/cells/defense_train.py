"""``defense-train``: train a model a plan lacks, standard or with a defense recipe, into the model store.

The cell's ``model`` is the checkpoint name it produces (``<dataset>/<arch>-<recipe>[-<tag>]``). Standard training
is :func:`robustbench_cnn.workflows.train_model`, a defense :func:`robustbench_cnn.defenses.defend`, both with
``TrainConfig.for_dataset(dataset, epochs, seed, **train)``. Its product is the checkpoint, so the cell writes no
file in the run folder: it is done when the store holds the checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellKind, CellResult
from robustbench_cnn.tables.results import RunStore

__all__ = ["DefenseTrain", "defense_train_cell"]


def defense_train_cell(
    name: str,
    dataset: str,
    arch: str,
    recipe: str = "standard",
    *,
    threat: str | None = None,
    epochs: int | None = None,
    params: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    tag: str | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
) -> Cell:
    """A ``defense-train`` cell producing checkpoint ``name``: ``arch`` trained on ``dataset`` with ``recipe``
    (``standard`` or a registered defense at ``threat``), ``epochs`` (None: the dataset's default), the defense's
    ``params`` and ``train`` overrides of the TrainConfig."""
    return Cell(
        kind="defense-train",
        model=name,
        dataset=dataset,
        params={
            "arch": arch,
            "recipe": recipe,
            "threat": threat,
            "epochs": epochs,
            "params": dict(params or {}),
            "train": dict(train or {}),
            "tag": tag,
        },
        n=None,
        seed=seed,
        device=device,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


@CELL_KINDS.register("defense-train")
class DefenseTrain(CellKind):
    """Train one model into the model store (standard cross-entropy or a defense recipe)."""

    writes_cell = False

    def done(self, cell: Cell, run: RunStore) -> bool:
        from robustbench_cnn.core.errors import CheckpointError
        from robustbench_cnn.store import resolve_checkpoint

        try:
            resolve_checkpoint(cell.model, cell.store)
        except CheckpointError:
            return False
        return True

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.training import TrainConfig

        p = cell.params
        config = TrainConfig.for_dataset(
            cell.dataset, epochs=p.get("epochs"), device=cell.device, seed=cell.seed, **p.get("train", {})
        )
        if p.get("recipe", "standard") == "standard":
            from robustbench_cnn.workflows import train_model

            trained: Any = train_model(
                p["arch"],
                cell.dataset,
                config,
                store=cell.store,
                tag=p.get("tag"),
                data_dir=cell.data_dir,
                progress=progress,
            )
        else:
            from robustbench_cnn.defenses import defend

            trained = defend(
                p["recipe"],
                p["arch"],
                cell.dataset,
                p["threat"],
                config,
                store=cell.store,
                tag=p.get("tag"),
                data_dir=cell.data_dir,
                progress=progress,
                **p.get("params", {}),
            )
        return CellResult(
            device=str(resolve_device(cell.device)), info={"trained": trained.card.name, "folder": str(trained.folder)}
        )
