"""``detection``: detectors guarding one model, evaluated non-adaptively and adaptively at each epsilon.

The cell runs :func:`robustbench_cnn.evaluation.detection.evaluate_detection` on the cell's model: each detector is
fitted on ``fit_n`` training points (a seeded subset of the train split; the ``learned`` detector also on their PGD
examples at the epsilon evaluated), calibrated on ``calibration_n`` clean test points disjoint from the ``n``
evaluation points (the next points of the same seeded permutation) to the false positive rate ``fpr``, and attacked
by the non-adaptive ``attacks`` and by the adaptive joint attack. Its tables:

- ``detection``: one row per detector x eps x attack (the ``adaptive`` row: per-sample worst case over every
  attack): clean accuracy, FPR, detection-aware clean accuracy, TPR and ROC-AUC, detection-robust accuracy with its
  95% Clopper-Pearson interval, the definition of a robust point, and the model columns;
- ``detection_samples``: one row per detector x eps x attack x point.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["Detection", "check_detection", "detection_cell"]


def detection_cell(
    model: str,
    dataset: str,
    *,
    detectors: list[tuple[str, dict[str, Any]]],
    norm: str = "linf",
    eps: list[float],
    attacks: list[str] | tuple[str, ...] = ("fgsm", "pgd"),
    adaptive_steps: int = 100,
    adaptive_restarts: int = 1,
    fpr: float = 0.05,
    fit_n: int = 2000,
    calibration_n: int = 1000,
    n: int | None = 500,
    seed: int = 0,
    batch_size: int = 500,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``detection`` cell: each of ``detectors`` (``(name, params)``) guarding ``model`` (store name or checkpoint
    path) on ``n`` test points of ``dataset`` at each ``norm`` epsilon of ``eps``."""
    return Cell(
        kind="detection",
        model=model,
        dataset=dataset,
        params={
            "detectors": [[str(name), dict(params)] for name, params in detectors],
            "norm": norm,
            "eps": sorted({float(e) for e in eps}),
            "attacks": list(attacks),
            "adaptive_steps": int(adaptive_steps),
            "adaptive_restarts": int(adaptive_restarts),
            "fpr": float(fpr),
            "fit_n": int(fit_n),
            "calibration_n": int(calibration_n),
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def check_detection(params: dict[str, Any]) -> None:
    """``ValueError`` (or ``UnknownNameError`` with suggestions) naming the first invalid setting of a
    ``detection`` cell (before any work)."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.core.types import Norm
    from robustbench_cnn.detectors import get_detector

    if not params["detectors"]:
        raise ValueError("give at least one --detector")
    for name, det_params in params["detectors"]:
        get_detector(name, **det_params)
    for name in params["attacks"]:
        ATTACKS.get(name)
    if Norm.parse(params["norm"]) not in (Norm.LINF, Norm.L2):
        raise ValueError(f"invalid --threat norm {params['norm']!r} for detection: use linf or l2")
    if not params["eps"]:
        raise ValueError("give at least one epsilon")
    if not 0 < params["fpr"] < 1:
        raise ValueError(f"invalid --fpr {params['fpr']}: must be in (0, 1)")
    for key, option in (
        ("adaptive_steps", "--adaptive-steps"),
        ("adaptive_restarts", "--adaptive-restarts"),
        ("fit_n", "--fit-n"),
        ("calibration_n", "--calibration-n"),
    ):
        if params[key] < 1:
            raise ValueError(f"invalid {option} {params[key]}: must be >= 1")


@CELL_KINDS.register("detection")
class Detection(OneModelKind):
    """Detectors guarding a model: clean FPR, non-adaptive TPR/ROC-AUC, and detection-robust accuracy under the
    non-adaptive attacks and under the adaptive joint attack (the figure that counts)."""

    def check(self, cell: Cell) -> None:
        check_detection(cell.params)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        import torch

        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.core.types import Norm
        from robustbench_cnn.data import load_split
        from robustbench_cnn.evaluation.detection import evaluate_detection

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        wider = load_split(cell.dataset, "test", n=len(split) + p["calibration_n"], data_dir=cell.data_dir)
        held_out = ~torch.isin(wider.index, split.index)
        if not held_out.any():
            raise ValueError(
                f"no clean test points are left for calibration: give -n smaller than the test split ({len(split)})"
            )
        fit = load_split(cell.dataset, "train", n=p["fit_n"], data_dir=cell.data_dir)
        result = evaluate_detection(
            model,
            [(name, params) for name, params in p["detectors"]],
            split.x.to(device),
            split.y.to(device),
            x_fit=fit.x.to(device),
            y_fit=fit.y.to(device),
            x_calibration=wider.x[held_out].to(device),
            norm=Norm.parse(p["norm"]),
            eps_list=p["eps"],
            attacks=p["attacks"],
            adaptive_steps=p["adaptive_steps"],
            adaptive_restarts=p["adaptive_restarts"],
            fpr=p["fpr"],
            seed=cell.seed,
            batch_size=cell.batch_size,
        )
        model_cols = {k: meta.get(k, "") for k in ("model", "checkpoint_sha256", "arch", "defense", "dataset")}
        head = {**model_cols, "seed": cell.seed, "fit_n": int(len(fit)), "adaptive_steps": p["adaptive_steps"]}
        head |= {"adaptive_restarts": p["adaptive_restarts"]}
        summary = pd.DataFrame([{**head, **rec} for rec in result.summary])
        ids = [int(i) for i in split.index]
        samples = pd.DataFrame(
            [{"model": meta.get("model", ""), **rec, "sample_id": ids[rec["sample"]]} for rec in result.samples]
        )
        return CellResult(
            tables={"detection": summary, "detection_samples": samples},
            model=meta,
            device=str(device),
            info={"detection_s": result.elapsed_s},
        )
