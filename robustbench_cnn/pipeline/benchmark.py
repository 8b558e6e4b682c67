"""``rbc benchmark``: a plan expanded into cells and run by the one runner, then the example grid.

:func:`run_benchmark` = :meth:`Plan.cells <robustbench_cnn.pipeline.plan.Plan.cells>` (train what the store
lacks, white-box untargeted and targeted, the proxy substitute and its transfers, the transfer matrix) +
:func:`~robustbench_cnn.pipeline.runner.run_cells` (local, worker processes or Ray, resumable cell by cell, every
table written atomically) + a few clean/adversarial example pairs (``examples.npz``). The leaderboard report is written by
:func:`robustbench_cnn.reporting.report.write_report` on the returned run folder (reporting sits above the
pipeline).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from robustbench_cnn.core.progress import console
from robustbench_cnn.pipeline.plan import Plan
from robustbench_cnn.pipeline.runner import CellDone, choose_executor, run_cells

__all__ = ["BenchmarkResult", "run_benchmark"]


@dataclass
class BenchmarkResult:
    """A finished benchmark run: its folder, summary table, the models it trained and its wall time."""

    run_dir: Path
    summary: pd.DataFrame
    trained: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_benchmark(
    plan: Plan,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    executor: str = "auto",
    ray_address: str | None = None,
    num_workers: int | None = None,
    store: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> BenchmarkResult:
    """Run the whole ``plan`` into ``out`` (default ``results/<plan>-<time>-<pid>``): expand it into cells, run
    them (``executor``: ``auto``, the default, runs them in worker processes on a multi-core CPU and locally otherwise
    (:func:`~robustbench_cnn.pipeline.runner.choose_executor`); ``local``, ``processes``, or ``ray`` with
    ``num_workers`` CPUs, default all, unless ``ray_address`` joins a cluster; ``resume`` skips the finished ones)
    and write ``examples.npz``."""
    from robustbench_cnn.tables.results import run_folder

    start = time.perf_counter()
    run_dir = run_folder(out, resume, plan.name)
    cells = plan.cells(store=store, data_dir=data_dir, device=device)
    kinds = pd.Series([c.kind for c in cells]).value_counts().to_dict()
    executor = choose_executor(executor, device, num_workers)
    console.print(
        f"[bold]benchmark {plan.name}[/]: {len(cells)} cells ("
        + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        + f"), executor {executor}",
        highlight=False,
    )
    trained: list[str] = []

    def on_cell(done: CellDone) -> None:
        if done.cell.kind == "defense-train":
            trained.append(done.cell.model)

    run = run_cells(
        cells,
        run_dir,
        resume=resume,
        executor=executor,
        ray_address=ray_address,
        num_workers=num_workers,
        progress=progress,
        on_cell=on_cell,
        config={"command": "benchmark", "plan": plan.to_dict()},
    )
    _write_examples(plan, run.dir, store=store, data_dir=data_dir, device=device)
    from robustbench_cnn.tables.results import read_summary

    return BenchmarkResult(run.dir, read_summary(run.dir), trained, time.perf_counter() - start)


def _write_examples(
    plan: Plan, run_dir: Path, *, store: str | os.PathLike | None, data_dir: str | os.PathLike | None, device: str
) -> None:
    """A few clean/adversarial pairs per model (``examples.npz``) for the report's example grid, at the epsilon the
    leaderboard ranks at (the plan's ``[report] eps``; the largest epsilon when it has none or it is 0), so that
    the images show the attack where the models are compared rather than where every standard model is at 0%."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.data import dataset_info
    from robustbench_cnn.evaluation.examples import write_examples

    eps = plan.report_eps if plan.report_eps is not None and plan.report_eps > 0 else max(plan.eps)
    if (run_dir / "examples.npz").exists() or eps <= 0 or len(plan.datasets) != 1:
        return
    dataset = plan.datasets[0]
    slug = dataset_info(dataset, data_dir).slug
    write_examples(
        run_dir,
        [spec.checkpoint_name(slug) for spec in plan.models],
        dataset,
        f"{plan.norm}:{eps}",
        n=4,
        seed=plan.seed,
        store=store,
        data_dir=data_dir,
        device=str(resolve_device(device)),
    )
