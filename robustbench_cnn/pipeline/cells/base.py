"""The cell: one independent unit of a run, and the registry of cell kinds.

A :class:`Cell` is plain data (kind name, JSON-able ``params``, model, dataset, seed, n), so it pickles to a Ray
worker. Its :attr:`Cell.id` hashes what defines its result (:meth:`Cell.key`: not the device, the paths or the
batch size) together with ``weights_sha256``, the hash of what it evaluates, set by the runner when the cell's
dependencies are done (``pin_weights``): a retrained model is a new cell, so resuming never reuses a stale one.
:attr:`Cell.ref` is the id before that pin; ``after`` lists the refs of the cells that must finish first.

A cell kind is a class registered in :data:`CELL_KINDS` whose :meth:`CellKind.run` turns a cell into a
:class:`~robustbench_cnn.tables.rows.CellResult`; the runner does the rest (resume, executors, progress,
metadata, atomic writes) the same way for every kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from robustbench_cnn.core.registry import Registry
from robustbench_cnn.tables.results import RunStore, cell_id
from robustbench_cnn.tables.rows import CellResult

__all__ = ["CELL_KINDS", "Cell", "CellKind", "CellResult", "card_meta", "load_store_model", "store_weights"]


@dataclass
class Cell:
    """One unit of work of a run (plain data: it travels to Ray workers and into ``run.json``)."""

    kind: str  # a registered cell kind (CELL_KINDS)
    model: str  # the model the cell evaluates or trains (store name, path, or a label)
    dataset: str
    params: dict[str, Any] = field(default_factory=dict)  # the kind's settings, JSON-able
    n: int | None = None  # test points (None: the whole split)
    seed: int = 0
    after: tuple[str, ...] = ()  # refs of the cells that must finish first
    # how to run it, not part of its key:
    device: str = "auto"
    batch_size: int = 256
    data_dir: str | None = None
    store: str | None = None
    weights_sha256: str = ""  # what the cell evaluates, pinned by the runner

    def key(self) -> dict[str, Any]:
        """What defines the cell's result (device, paths, batch size and dependencies do not)."""
        return {
            "kind": self.kind,
            "model": self.model,
            "dataset": self.dataset,
            "params": self.params,
            "n": self.n,
            "seed": self.seed,
            "weights_sha256": self.weights_sha256,
        }

    @property
    def id(self) -> str:
        """The cell's id: its key hashed (:func:`~robustbench_cnn.tables.results.cell_id`), weights included."""
        return cell_id(**self.key())

    @property
    def ref(self) -> str:
        """The cell's id before its weights are pinned: how other cells of a plan name it in ``after``."""
        return cell_id(**{**self.key(), "weights_sha256": ""})

    def pinned(self, weights_sha256: str) -> Cell:
        return replace(self, weights_sha256=weights_sha256)

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-able record for ``run.json``: the params beside the cell's own fields."""
        own = {
            "id": self.id,
            "ref": self.ref,
            "kind": self.kind,
            "model": self.model,
            "dataset": self.dataset,
            "n": self.n,
            "seed": self.seed,
            "after": list(self.after),
            "device": self.device,
            "batch_size": self.batch_size,
            "data_dir": self.data_dir,
            "store": self.store,
            "weights_sha256": self.weights_sha256,
        }
        return {**self.params, **own}


class CellKind:
    """What a kind of cell does. Subclasses register with ``@CELL_KINDS.register("name")`` and implement
    :meth:`run`; the other methods have defaults."""

    #: set by the registry decorator
    registry_name: ClassVar[str] = ""
    #: False for a kind whose product lives elsewhere (the model store) and that writes no cell file
    writes_cell: ClassVar[bool] = True

    def check(self, cell: Cell) -> None:
        """Validate the cell's params before any work (``ValueError``/``RbcError``); default: nothing."""

    def weights(self, cell: Cell) -> str:
        """A hash of what the cell evaluates (its models' weights), pinned into its id once its dependencies
        are done; default: nothing to pin."""
        return ""

    def done(self, cell: Cell, run: RunStore) -> bool:
        """Whether the (pinned) cell is finished already: its summary file is in the run folder."""
        return run.has_cell(cell.id)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        """Compute the cell (in this process or a Ray worker); the runner writes what it returns."""
        raise NotImplementedError


#: The registered cell kinds: name -> CellKind subclass.
CELL_KINDS: Registry[type[CellKind]] = Registry("cell kind")


def store_weights(names: list[str], store: str | os.PathLike | None) -> str:
    """The weights sha256 of store checkpoints, joined with ':' in the order given (no weights are read)."""
    from robustbench_cnn.store import weights_sha256

    return ":".join(weights_sha256(name, store) for name in names)


def card_meta(card: Any, dataset: str) -> dict[str, Any]:
    """The model columns of a results row for a store checkpoint's card."""
    return {
        "model": card.name,
        "checkpoint_sha256": card.weights_sha256,
        "arch": card.arch,
        "defense": card.recipe if card.recipe != "standard" else "",
        "dataset": dataset,
        "split": "test",
    }


def load_store_model(name: str, cell: Cell, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """A store checkpoint (or checkpoint path) for the cell's dataset on ``device``, and its card."""
    from robustbench_cnn.workflows import load_for_dataset

    return load_for_dataset(name, cell.dataset, device, cell.store, cell.data_dir)
