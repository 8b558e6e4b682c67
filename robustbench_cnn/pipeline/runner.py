"""The one runner: every cell of every kind is run, resumed and written here.

:func:`run_cells` expands nothing: it takes cells (from a :class:`~robustbench_cnn.pipeline.plan.Plan` or a
workflow), and

1. runs them in an order that respects their dependencies (``Cell.after``): locally one after another in the
   given order; with worker processes or Ray, each cell is submitted as soon as the cells it depends on are written;
2. pins each cell's weights (:func:`pin_weights`, the hash of what it evaluates) once its dependencies are done,
   so that a retrained model is a new cell and resuming never reuses a stale one;
3. skips finished cells (``resume``) and refuses a folder holding cells of another request;
4. hands each :class:`~robustbench_cnn.tables.rows.CellResult` to the one row builder and the one run-metadata
   builder (:mod:`robustbench_cnn.tables.rows`) and writes the cell atomically through
   :class:`~robustbench_cnn.tables.results.RunStore`; ``run.json`` records the request, and the run's tables
   are rebuilt from its cells at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_cnn.pipeline.cells import CELL_KINDS, Cell, CellKind, CellResult
from robustbench_cnn.tables.results import RunStore, run_folder
from robustbench_cnn.tables.rows import run_metadata, samples_frame, summary_frame, table_frame

__all__ = [
    "EXECUTORS",
    "CellDone",
    "LocalExecutor",
    "RunInterrupted",
    "choose_executor",
    "execute_cell",
    "pin_weights",
    "run_cells",
]

#: The executors :func:`run_cells` accepts; ``auto`` is resolved by :func:`choose_executor`.
EXECUTORS = ("auto", "local", "processes", "ray")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_cells`: a ``KeyboardInterrupt`` that says where the finished cells are.

    ``run_dir`` holds ``finished`` of the run's ``total`` cells (each written atomically as it finished, those
    reused from an earlier run included); running the same request again with ``resume`` continues from them.
    """

    def __init__(self, run_dir: Path, finished: int, total: int) -> None:
        super().__init__(f"interrupted: {finished} of {total} cells finished are in {run_dir}")
        self.run_dir, self.finished, self.total = run_dir, finished, total


def _kind(cell: Cell) -> CellKind:
    return CELL_KINDS.get(cell.kind)()


def pin_weights(cell: Cell) -> Cell:
    """``cell`` with ``weights_sha256`` set to the hash of what it evaluates (store cards' weights; a
    bring-your-own model's file and weights file), so that resuming never reuses a cell computed with other
    weights or an edited model file. A cell already pinned is returned unchanged."""
    if cell.weights_sha256:
        return cell
    return cell.pinned(_kind(cell).weights(cell))


def execute_cell(cell: Cell, progress: bool = False) -> CellResult:
    """Compute one cell with its kind (in this process or in a Ray worker)."""
    return _kind(cell).run(cell, progress)


@dataclass
class CellDone:
    """What :func:`run_cells` hands to ``on_cell`` for each cell it ran: the cell, its result and the typed
    summary rows it wrote (empty for a kind that writes no cell)."""

    cell: Cell
    result: CellResult
    summary: Any
    seconds: float


class LocalExecutor:
    """Runs the submitted cells in this process, one at a time, in submission order (the runner submits them in
    the order given, each once the cells it waits for are done)."""

    def __init__(self, fn: Callable[[Cell, bool], CellResult], progress: bool = True) -> None:
        self.fn, self.progress = fn, progress
        self.queue: deque[Cell] = deque()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.clear()

    def submit(self, cell: Cell) -> None:
        self.queue.append(cell)

    def next_done(self) -> tuple[Cell, CellResult]:
        cell = self.queue.popleft()
        return cell, self.fn(cell, self.progress)


def choose_executor(executor: str, device: str = "auto", num_workers: int | None = None) -> str:
    """The executor ``auto`` stands for; any other name is returned as given.

    ``auto`` runs cells in worker processes (``processes``) when they can run side by side on this machine's
    CPUs: the device is the CPU, and the CPUs this process may use and torch's thread count (``--threads``) both
    allow two or more workers, or ``num_workers`` asks for them. Otherwise ``local``: on CUDA or MPS the cells
    share one accelerator, and at ``--threads 1`` the user asked for one core. The cells and their tables are the
    same either way (``tests/test_process_executor.py``); only the wall time differs.
    """
    if executor != "auto":
        return executor
    import torch

    from robustbench_cnn.core import devices
    from robustbench_cnn.pipeline import process_executor

    if devices.resolve_device(device).type != "cpu":
        return "local"
    workers = num_workers or min(process_executor.available_cpus(), torch.get_num_threads())
    return "processes" if workers >= 2 else "local"


def _make_executor(
    executor: str, progress: bool, ray_address: str | None, num_workers: int | None
) -> LocalExecutor | Any:
    if executor == "local":
        return LocalExecutor(execute_cell, progress)
    if executor == "processes":
        import torch

        from robustbench_cnn.pipeline.process_executor import ProcessExecutor, available_cpus

        workers = num_workers or available_cpus()
        return ProcessExecutor(execute_cell, workers=workers, threads=torch.get_num_threads() // workers)
    if executor == "ray":
        from robustbench_cnn.pipeline.ray_executor import RayExecutor

        return RayExecutor(execute_cell, ray_address=ray_address, num_cpus=num_workers)
    raise ValueError(f"invalid executor {executor!r}: use {' or '.join(EXECUTORS)}")


def _check_dependencies(cells: list[Cell]) -> None:
    """Each cell is listed once and each ``after`` ref names an earlier cell of the list (so the given order runs,
    and nothing waits forever)."""
    seen: set[str] = set()
    for cell in cells:
        if cell.ref in seen:
            raise ValueError(f"cell {cell.ref} ({cell.kind} {cell.model}) is listed twice")
        missing = [ref for ref in cell.after if ref not in seen]
        if missing:
            raise ValueError(
                f"cell {cell.ref} ({cell.kind} {cell.model}) waits for {', '.join(missing)}, "
                f"which is not an earlier cell of the run"
            )
        seen.add(cell.ref)


def run_cells(
    cells: list[Cell],
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    on_cell: Callable[[CellDone], None] | None = None,
    config: dict[str, Any] | None = None,
    prefix: str = "run",
) -> RunStore:
    """Run every unfinished cell, writing each atomically as it finishes; returns the run's store.

    Args:
        cells: the run's cells, dependencies (``after``) before the cells that need them.
        run_dir: the run folder (default ``results/<prefix>-<time>-<pid>``).
        resume: skip the cells already in the folder; without it a folder holding cells is an error (results are
            never silently mixed). A resumed folder must hold only cells of this request, and the tables are
            rebuilt from this request's cells only.
        executor: ``local`` (default: in this process, in order), ``processes`` (``num_workers`` spawned worker
            processes, default one per available CPU, sharing the torch threads: :mod:`.process_executor`),
            ``ray`` (each cell a Ray task; a local cluster of ``num_workers`` CPUs unless ``ray_address`` joins one)
            or ``auto`` (``processes`` or ``local``, as :func:`choose_executor` decides for the cells' device).
        progress: progress bars in local cells, and one line per finished cell.
        on_cell: called in this process with a :class:`CellDone` for each cell run (not for skipped ones).
        config: recorded in ``run.json`` beside the cells (e.g. the command, the plan).

    A resumed run prints how many cells it reused. Ctrl-C (``KeyboardInterrupt``) while cells run raises
    :class:`RunInterrupted`, naming the folder that holds the cells finished so far.
    """
    for cell in cells:
        _kind(cell).check(cell)
    _check_dependencies(cells)
    if executor == "auto":
        executor = choose_executor(executor, cells[0].device if cells else "auto", num_workers)
    store = RunStore(run_folder(run_dir, resume, prefix))
    order = list(cells)
    pinned: dict[str, Cell] = {}  # ref -> pinned cell
    done: set[str] = set()  # refs of finished cells (run now or before)
    running: set[str] = set()
    checked = False
    head = {"argv": sys.argv, "executor": executor, **(config or {})}

    def planned() -> list[str]:
        return [c.id for c in pinned.values() if _kind(c).writes_cell]

    def record(final: bool = False) -> None:
        cells_now = [pinned.get(c.ref, c).to_dict() for c in order]
        meta = run_metadata(store.run_id)
        meta.pop("cell_id"), meta.pop("device")
        store.write_run_json({**meta, **head, "cells": cells_now, "cell_ids": sorted(planned()), "complete": final})

    def pin_ready() -> list[Cell]:
        """The undispatched cells whose dependencies are done, pinned; an executor that runs cells in order gets
        them only up to the first cell still waiting."""
        ready = []
        for c in order:
            if c.ref in dispatched:
                continue
            if not all(r in done for r in c.after):
                if in_order:
                    break
                continue
            ready.append(pinned.get(c.ref) or c)
        for cell in ready:
            pinned[cell.ref] = pin_weights(cell)  # a missing model fails here, before the folder is made
        return [pinned[c.ref] for c in ready]

    dispatched: set[str] = set()  # refs skipped as done or submitted
    in_order = executor == "local"
    ready = pin_ready()
    store.check_fresh(resume)
    if len(pinned) == len(order):  # every id known: refuse a folder of a different request before any work
        store.check_plan(planned(), resume)
        checked = True
    record()
    started = time.perf_counter()
    reused = 0  # cells found finished in the folder (resume)
    try:
        with _make_executor(executor, progress, ray_address, num_workers) as pool:
            while len(done) < len(order):
                while ready:  # dispatch what can run; cells found done already free their dependents at once
                    if not checked and len(pinned) == len(order):  # every id known: refuse a different request now
                        store.check_plan(planned(), resume=True)  # the folder was checked fresh; this run wrote since
                        checked = True
                        record()
                    for cell in ready:
                        dispatched.add(cell.ref)
                        if _kind(cell).done(cell, store):
                            done.add(cell.ref)
                            reused += 1
                        else:
                            pool.submit(cell)
                            running.add(cell.ref)
                    ready = pin_ready()
                if len(done) == len(order):
                    break
                if not running:  # cannot happen after _check_dependencies; guards against an endless loop
                    raise RuntimeError("no cell can run: the dependencies are not satisfiable")
                t0 = time.perf_counter()
                cell, result = pool.next_done()
                summary = _write(store, cell, result)
                running.discard(cell.ref)
                done.add(cell.ref)
                seconds = time.perf_counter() - t0
                if progress:
                    from robustbench_cnn.core.progress import console

                    console.print(
                        f"[dim]cell {len(done)}/{len(order)}[/] {cell.kind} {cell.model} "
                        f"({time.perf_counter() - started:.1f} s)",
                        highlight=False,
                    )
                if on_cell:
                    on_cell(CellDone(cell, result, summary, seconds))
                ready = pin_ready()
    except KeyboardInterrupt:
        raise RunInterrupted(store.dir, len(done), len(order)) from None
    if resume:
        from robustbench_cnn.core.progress import console

        console.print(
            f"resumed {store.dir}: reused {reused} of {len(order)} cells, ran {len(order) - reused}", highlight=False
        )
    if not checked:
        store.check_plan(planned(), resume=True)
    record(final=True)
    store.finalize(planned())
    return store


def _write(store: RunStore, cell: Cell, result: CellResult) -> Any:
    """The one place a cell's rows are built and written (nothing for a kind whose product lives elsewhere)."""
    meta = run_metadata(store.run_id, cell.id, result.device)
    summary = summary_frame(result, meta)
    if not _kind(cell).writes_cell:
        return summary
    samples = samples_frame(result, meta) if result.samples else None
    tables = {name: table_frame(table, meta) for name, table in result.tables.items()}
    store.write_cell(cell.id, summary, samples, tables)
    return summary
