"""The workflow of ``rbc explain``: one ``explain`` cell per model (:mod:`robustbench_cnn.pipeline.cells.explain`)
through the one runner, into one run folder (``explain_samples.parquet``, ``explain_maps.parquet``,
``run.json``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_cnn.pipeline.cells import explain_cell
from robustbench_cnn.pipeline.runner import run_cells

__all__ = ["ExplainRun", "explain_models"]

PathLike = str | os.PathLike


@dataclass
class ExplainRun:
    """A finished ``rbc explain`` run: its folder, the per-sample shift table and its per-method summary."""

    run_dir: Path
    samples: pd.DataFrame
    summary: pd.DataFrame


def explain_models(
    models: str | list[str],
    *,
    threat: str,
    attack: str = "pgd",
    attack_params: dict[str, Any] | None = None,
    target_policy: str | None = None,
    methods: str | list[str] | None = None,
    config: dict[str, Any] | None = None,
    dataset: str = "digits",
    n: int | None = 8,
    grid_rows: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> ExplainRun:
    """Explain the clean vs adversarial predictions of each of ``models`` (comma-separated store names or
    checkpoint paths) on the same ``n`` test points of ``dataset``, attacked by ``attack`` within ``threat``
    (``NORM:EPS``): one ``explain`` cell per model into the run folder ``out``."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.evaluation.explain import shift_summary

    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    if not names:
        raise ValueError("give --model NAME|PATH (comma-separated for several; rbc models list)")
    if n is not None and n < 1:
        raise ValueError(f"invalid -n {n}: must be >= 1")
    resolve_device(device)
    method_list = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else methods
    cells = [
        explain_cell(
            name,
            dataset,
            threat,
            attack,
            attack_params=attack_params,
            target_policy=target_policy,
            methods=method_list,
            config=config,
            grid_rows=grid_rows,
            n=n,
            seed=seed,
            batch_size=batch_size,
            device=device,
            data_dir=data_dir,
            store=store,
        )
        for name in names
    ]
    run = run_cells(cells, out, resume=resume, progress=progress, config={"command": "explain"})
    samples = run.table("explain_samples")
    return ExplainRun(run.dir, samples, shift_summary(samples))
