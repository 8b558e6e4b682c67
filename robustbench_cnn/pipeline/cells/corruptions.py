"""``corruptions``: one model's accuracy under common corruptions, per corruption and severity, and their mean.

The cell runs :func:`robustbench_cnn.evaluation.corruptions.evaluate_corruptions` (CIFAR-10-C of Hendrycks and
Dietterich, ICLR 2019, for 3-channel data; MNIST-C of Mu and Gilmer, 2019, for 1-channel data; corruptions
generated on the fly, seeded per image) on the cell's model, dataset and points for the corruption threat it names
(``corruptions``, ``corruptions:S``, ``corruption:NAME``, ``corruption:NAME:S``; see
:class:`~robustbench_cnn.core.corruption_threat.CorruptionThreat`). It writes no attack-summary rows; its table
``corruptions`` has one row per (corruption, severity) and a ``mean`` row (severity 0), each with the model columns.
"""

from __future__ import annotations

import os

import pandas as pd

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["Corruptions", "corruptions_cell"]


def corruptions_cell(
    model: str,
    dataset: str,
    threat: str = "corruptions",
    *,
    benchmark: str | None = None,
    n: int | None = 1000,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    model_def: str | None = None,
    weights: str | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``corruptions`` cell: ``model`` (store name or checkpoint path; a label with a bring-your-own
    ``model_def`` and ``weights``) on ``n`` test points of ``dataset`` under the corruption ``threat``;
    ``benchmark`` ``cifar10-c`` | ``mnist-c`` (default: by the images' channels)."""
    from robustbench_cnn.core.corruption_threat import CorruptionThreat

    return Cell(
        kind="corruptions",
        model=model,
        dataset=dataset,
        params={
            "threat": str(CorruptionThreat.parse(threat)),
            "benchmark": benchmark,
            "model_def": model_def,
            "weights": weights,
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


@CELL_KINDS.register("corruptions")
class Corruptions(OneModelKind):
    """Accuracy under common corruptions, per corruption and severity, and the mean over the evaluated cells."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.core.corruption_threat import CorruptionThreat

        CorruptionThreat.parse(cell.params["threat"])

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.evaluation.corruptions import evaluate_corruptions

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        evaluation = evaluate_corruptions(
            model,
            split.x,
            split.y,
            p["threat"],
            benchmark=p.get("benchmark"),
            seed=cell.seed,
            indices=split.index,
            batch_size=cell.batch_size,
            device=device,
        )
        model_cols = {k: meta.get(k, "") for k in ("model", "checkpoint_sha256", "arch", "defense", "dataset")}
        table = pd.DataFrame(evaluation.records(model_cols))
        table["benchmark_mean"] = table.get("benchmark_mean", pd.Series(dtype="object")).fillna(False).astype(bool)
        return CellResult(tables={"corruptions": table}, model=meta, device=str(device))
