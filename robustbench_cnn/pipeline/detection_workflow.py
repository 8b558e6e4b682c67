"""The workflow behind ``rbc detect``: options -> one ``detection`` cell -> the run folder and its table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.pipeline.cells.detection import detection_cell
from robustbench_cnn.pipeline.runner import run_cells

__all__ = ["DetectRun", "detect_model", "detector_specs"]

PathLike = str | os.PathLike


@dataclass
class DetectRun:
    """What :func:`detect_model` produced: the run folder and the ``detection`` table."""

    run_dir: Path
    table: pd.DataFrame


def detector_specs(names: Sequence[str], params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, params)`` per detector of ``names`` (each may be comma-separated; ``all`` = every registered one);
    a parameter goes to every chosen detector that has it, and one that none of them has is a ``ValueError``.
    Unknown names raise :class:`~robustbench_cnn.core.errors.UnknownNameError` with close names."""
    from robustbench_cnn.detectors import DETECTORS

    chosen: list[str] = []
    for text in names:
        for name in (part.strip().lower() for part in str(text).split(",")):
            if not name:
                continue
            for one in DETECTORS.list() if name == "all" else [name]:
                DETECTORS.get(one)
                if one not in chosen:
                    chosen.append(one)
    if not chosen:
        raise ValueError(f"give --detector NAME (one of {', '.join(DETECTORS.list())}, or all)")
    accepted = {name: set(DETECTORS.get(name).defaults) for name in chosen}
    unused = sorted(k for k in params if not any(k in keys for keys in accepted.values()))
    if unused:
        known = ", ".join(sorted(set().union(*accepted.values()))) or "none"
        raise ValueError(f"invalid parameter(s) {', '.join(unused)} for the chosen detectors: accepted: {known}")
    return [(name, {k: v for k, v in params.items() if k in accepted[name]}) for name in chosen]


def detect_model(
    model: str,
    *,
    detectors: Sequence[str],
    params: dict[str, Any] | None = None,
    threat: str = "linf",
    eps: str | None = None,
    dataset: str = "digits",
    n: int | None = 500,
    attacks: str = "fgsm,pgd",
    adaptive_steps: int = 100,
    adaptive_restarts: int = 1,
    fpr: float = 0.05,
    fit_n: int = 2000,
    calibration_n: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> DetectRun:
    """Evaluate ``detectors`` guarding ``model`` (store name or checkpoint path) on ``n`` test points at the
    ``threat``/``eps`` curve: one ``detection`` cell (:mod:`robustbench_cnn.pipeline.cells.detection`) into the run
    folder ``out``."""
    from robustbench_cnn.core.devices import resolve_device

    if not model:
        raise ValueError("give --model NAME|PATH (rbc models list)")
    resolve_device(device)
    specs = detector_specs(detectors, dict(params or {}))
    threats = ThreatModel.parse_curve(threat, eps)
    attack_names = [a.strip() for a in attacks.split(",") if a.strip()]
    cell = detection_cell(
        model,
        dataset,
        detectors=specs,
        norm=threats[0].norm.value,
        eps=[t.eps for t in threats],
        attacks=attack_names,
        adaptive_steps=adaptive_steps,
        adaptive_restarts=adaptive_restarts,
        fpr=fpr,
        fit_n=fit_n,
        calibration_n=calibration_n,
        n=n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        data_dir=data_dir,
        store=store,
    )
    run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "detect"})
    return DetectRun(run.dir, run.table("detection"))
