"""``proxy-train``: a substitute of a black-box target trained from oracle labels (Papernot et al. 2017).

The cell's ``model`` is the target (queried only through an oracle); ``params`` are ``substitute`` (the
architecture) and :func:`robustbench_cnn.attacks.blackbox.substitute.train_substitute`'s options (``seed_size``,
``rounds``, ``lam``, ``tau``, ``budget``, ``epochs_per_round``, ``oracle_mode``, ``max_new_per_round``, ``growth``,
``augmentations``, ``tag``, ...). The substitute is saved to the model store (:func:`substitute_checkpoint` names
it), where ``transfer`` cells that run ``after`` this one find it; the cell's ``history`` table has one row per
training round.
"""

from __future__ import annotations

import os
from typing import Any

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellKind, CellResult, load_store_model, store_weights

__all__ = ["ProxyTrain", "proxy_train_cell", "substitute_checkpoint"]


def proxy_train_cell(
    target: str,
    dataset: str,
    substitute: str = "lenet5",
    *,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``proxy-train`` cell: a ``substitute`` architecture trained from the oracle labels of ``target``
    (a store checkpoint) on ``dataset``; ``options`` go to ``train_substitute``."""
    return Cell(
        kind="proxy-train",
        model=target,
        dataset=dataset,
        params={"substitute": substitute, **dict(options or {})},
        n=None,
        seed=seed,
        after=tuple(after),
        device=device,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def substitute_checkpoint(cell: Cell) -> str:
    """The store name the proxy-train ``cell`` saves its substitute under."""
    from robustbench_cnn.attacks.blackbox.substitute import substitute_name
    from robustbench_cnn.data import dataset_info

    slug = dataset_info(cell.dataset, cell.data_dir).slug
    return substitute_name(slug, cell.params.get("substitute", "lenet5"), cell.model, cell.params.get("tag"))


@CELL_KINDS.register("proxy-train")
class ProxyTrain(CellKind):
    """Train a substitute of a target from oracle labels and save it to the model store."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.models import MODELS

        MODELS.get(cell.params.get("substitute", "lenet5"))

    def weights(self, cell: Cell) -> str:
        return store_weights([cell.model], cell.store)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        import pandas as pd

        from robustbench_cnn.attacks.blackbox.substitute import train_substitute
        from robustbench_cnn.core.devices import resolve_device

        device = resolve_device(cell.device)
        options = dict(cell.params)
        arch = options.pop("substitute", "lenet5")
        target, card = load_store_model(cell.model, cell, device)
        result = train_substitute(
            target,
            cell.dataset,
            arch,
            seed=cell.seed,
            device=str(device),
            data_dir=cell.data_dir,
            store=cell.store,
            target_name=card.name,
            progress=progress,
            **options,
        )
        history = result.history.assign(
            target=pd.Series(card.name, index=result.history.index, dtype="string"),
            substitute=pd.Series(result.card.name, index=result.history.index, dtype="string"),
        )
        info = {"substitute": result.card.name, "queries": result.queries, "folder": str(result.folder)}
        return CellResult(tables={"history": history}, device=str(device), info=info)
