"""Cells and executors: a run is a list of independent cells, each written to the run folder when done.

A cell is one model x dataset x attack suite x norm x epsilon list (x targeted policy). ``run_cells`` runs the
cells that are not finished yet (``resume``) with the local executor (default) or Ray, and writes each one
atomically through :class:`~robustbench_cnn.tables.results.RunStore`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robustbench_cnn.tables.results import (
    SAMPLES_SCHEMA,
    SCHEMA_VERSION,
    SUMMARY_SCHEMA,
    RunStore,
    cell_id,
    run_folder,
    typed_frame,
)


@dataclass
class EvalCell:
    """One independent unit of evaluation work (plain data, so it can travel to a Ray worker)."""

    model: str  # store name or checkpoint path (or a label for a bring-your-own model)
    dataset: str
    norm: str
    eps: list[float]
    suite: str = "quick"  # a suite name or comma-separated attack names
    attack_params: dict[str, Any] = field(default_factory=dict)  # for a single named attack
    n: int | None = 1000
    targeted: bool = False
    target_policy: str = "random"
    seed: int = 0
    batch_size: int = 256
    device: str = "auto"
    data_dir: str | None = None
    store: str | None = None
    model_def: str | None = None  # file.py:factory for a bring-your-own model
    weights: str | None = None
    defense: str = ""
    weights_sha256: str = ""  # what is evaluated (set by :func:`pin_weights`): a retrained model is a new cell

    def key(self) -> dict[str, Any]:
        """What defines the cell's result (device, paths and batch size do not)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "norm": self.norm,
            "eps": sorted(self.eps),
            "suite": self.suite,
            "attack_params": self.attack_params,
            "n": self.n,
            "targeted": self.targeted,
            "target_policy": self.target_policy if self.targeted else "",
            "seed": self.seed,
            "model_def": self.model_def,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
        }

    @property
    def id(self) -> str:
        return cell_id(**self.key())


def pin_weights(cell: EvalCell) -> EvalCell:
    """``cell`` with ``weights_sha256`` set to the hash of what it will evaluate (the store card's weights; for a
    bring-your-own model the model file's and the ``--weights`` file's), so that resuming never reuses a cell
    computed with other weights or an edited model file."""
    if cell.weights_sha256:
        return cell
    if cell.model_def:
        from robustbench_cnn.store import sha256_file

        files = [Path(cell.model_def.rsplit(":", 1)[0])] + ([Path(cell.weights)] if cell.weights else [])
        # a missing file is reported when the cell loads it
        sha = ":".join(sha256_file(path) if path.is_file() else "" for path in files)
    else:
        from robustbench_cnn.store import weights_sha256

        sha = weights_sha256(cell.model, cell.store)
    return replace(cell, weights_sha256=sha)


def load_cell_model(cell: EvalCell, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The cell's model on ``device`` and metadata for the results rows."""
    if cell.model_def:
        from robustbench_cnn.byom import load_model_def

        model, sha = load_model_def(cell.model_def, cell.weights, device)
        return model, {"model": cell.model, "checkpoint_sha256": sha, "arch": cell.model_def, "defense": cell.defense}
    from robustbench_cnn.workflows import load_for_dataset

    model, card = load_for_dataset(cell.model, cell.dataset, device, cell.store, cell.data_dir)
    defense = cell.defense or (card.recipe if card.recipe != "standard" else "")
    return model, {"model": card.name, "checkpoint_sha256": card.weights_sha256, "arch": card.arch, "defense": defense}


def prepare_cell(cell: EvalCell, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any], Any]:
    """Seed, then the cell's model (checked against its dataset when it is a bring-your-own model), its metadata
    and its test split: what every evaluation of a cell starts from."""
    from robustbench_cnn.core.devices import seed_everything
    from robustbench_cnn.data import load_split

    seed_everything(cell.seed)
    model, meta = load_cell_model(cell, device)
    split = load_split(cell.dataset, "test", n=cell.n, data_dir=cell.data_dir)
    if cell.model_def:
        from robustbench_cnn.byom import check_input

        check_input(model, split.x[:2].to(device), cell.model_def, cell.dataset, num_classes=split.info.num_classes)
    return model, meta, split


def run_cell(cell: EvalCell, run_id: str, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Evaluate one cell: returns (summary rows, per-sample rows, the Evaluation)."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.types import Norm
    from robustbench_cnn.evaluation.engine import evaluate
    from robustbench_cnn.store import git_sha, package_versions

    device = resolve_device(cell.device)
    model, meta, split = prepare_cell(cell, device)
    attacks: Any = cell.suite
    if cell.attack_params and "," not in cell.suite:
        attacks = [(cell.suite, cell.attack_params)]
    evaluation = evaluate(
        model,
        split.x,
        split.y,
        Norm.parse(cell.norm),
        cell.eps,
        attacks,
        targeted=cell.targeted,
        target_policy=cell.target_policy,
        seed=cell.seed,
        batch_size=cell.batch_size,
        progress=progress,
        device=device,
    )
    import datetime as _dt
    import json

    cid = cell.id
    row_meta = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "cell_id": cid,
        **meta,
        "dataset": cell.dataset,
        "split": "test",
        "device": str(device),
        "versions": json.dumps(package_versions(), sort_keys=True),
        "git_sha": git_sha() or "",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    summary = typed_frame(evaluation.summary_rows(row_meta), SUMMARY_SCHEMA)
    sample_meta = {"run_id": run_id, "cell_id": cid, "model": meta["model"], "dataset": cell.dataset}
    samples = typed_frame(evaluation.sample_rows(split.index, sample_meta), SAMPLES_SCHEMA)
    return summary, samples, evaluation


CellCallback = Callable[[EvalCell, pd.DataFrame, Any], None]


def run_cells(
    cells: list[EvalCell],
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    on_cell: CellCallback | None = None,
    config: dict[str, Any] | None = None,
    other_cells: Iterable[str] = (),
) -> RunStore:
    """Run every unfinished cell, writing each atomically as it finishes; returns the run's store.

    With ``resume``, cells already in the run folder are skipped; without it, an existing non-empty run
    folder is an error (so results are never silently mixed). A resumed folder must hold only cells of this
    plan (``cells`` plus ``other_cells``, the ids of cells a caller writes itself, e.g. the benchmark's proxy
    cells), and the tables are rebuilt from the plan's cells only.
    """
    run_dir = run_folder(run_dir, resume)
    cells = [pin_weights(c) for c in cells]
    planned = [c.id for c in cells] + list(other_cells)
    store = RunStore(run_dir)
    store.check_plan(planned, resume)
    store.write_run_json(
        {
            "argv": sys.argv,
            "cells": [asdict(c) for c in cells],
            "cell_ids": sorted(planned),
            "executor": executor,
            **(config or {}),
        }
    )
    todo = [c for c in cells if not store.has_cell(c.id)]
    if executor == "ray":
        from robustbench_cnn.pipeline.ray_executor import run_with_ray

        run_with_ray(todo, store, ray_address=ray_address, on_cell=on_cell)
    elif executor == "local":
        for cell in todo:
            summary, samples, evaluation = run_cell(cell, store.run_id, progress=progress)
            store.write_cell(cell.id, summary, samples)
            if on_cell:
                on_cell(cell, summary, evaluation)
    else:
        raise ValueError(f"invalid executor {executor!r}: use local or ray")
    store.finalize(planned)
    return store
