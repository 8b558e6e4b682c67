"""``certify``: randomized smoothing of one model, certified (lower) and attacked (upper) bounds per L2 radius.

The cell runs :func:`robustbench_cnn.evaluation.smoothing.certify_and_attack` (CERTIFY/PREDICT of Cohen et al.,
"Certified Adversarial Robustness via Randomized Smoothing", ICML 2019; SmoothAdv of Salman et al., NeurIPS 2019)
on the cell's model, dataset and points: CERTIFY with ``n0`` selection and ``n`` estimation noise samples at
``sigma``, confidence ``1 - alpha``, then at each radius a SmoothAdv attack (``attack_steps`` steps,
``noise_samples`` noise draws per step) judged by PREDICT. It writes no attack-summary rows (the smoothed
classifier has no ``robust_acc`` of an attack at an epsilon); its tables are:

- ``certify``: one row per radius: certified and empirical accuracy with 95% Clopper-Pearson intervals, the gap
  (empirical minus certified), the inconsistency count and allowance, the flag codes, and the model columns;
- ``certify_samples``: one row per point: CERTIFY's prediction, ``pA`` lower bound and radius, and per radius
  PREDICT on the attack's point, its distance and whether the point is broken.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["Certify", "certify_cell", "check_certify"]


def certify_cell(
    model: str,
    dataset: str,
    *,
    sigma: float,
    radii: list[float],
    n0: int = 100,
    noise_samples: int = 10_000,
    alpha: float = 0.001,
    attack_steps: int = 20,
    attack_noise_samples: int = 16,
    n: int | None = 100,
    seed: int = 0,
    batch_size: int = 1000,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``certify`` cell: the smoothed classifier of ``model`` (store name or checkpoint path) at noise level
    ``sigma`` on ``n`` test points of ``dataset``, certified with ``noise_samples`` (CERTIFY's ``n``) and ``n0``
    noise draws at confidence ``1 - alpha`` and attacked by SmoothAdv (``attack_steps`` steps,
    ``attack_noise_samples`` noise draws per step) at each L2 radius of ``radii``."""
    return Cell(
        kind="certify",
        model=model,
        dataset=dataset,
        params={
            "sigma": float(sigma),
            "radii": sorted({float(r) for r in radii}),
            "n0": int(n0),
            "noise_samples": int(noise_samples),
            "alpha": float(alpha),
            "attack_steps": int(attack_steps),
            "attack_noise_samples": int(attack_noise_samples),
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def check_certify(params: dict[str, Any]) -> None:
    """``ValueError`` naming the first invalid setting of a ``certify`` cell (before any work)."""
    sigma = params["sigma"]
    if not sigma > 0 or sigma == float("inf"):
        raise ValueError(f"invalid --sigma {sigma!r}: the smoothing noise level must be > 0")
    radii = params["radii"]
    if not radii or any(not (r >= 0) or r == float("inf") for r in radii):
        raise ValueError(f"invalid --radii {radii!r}: give L2 radii >= 0, e.g. 0,0.25,0.5")
    for key, option in (("n0", "--n0"), ("noise_samples", "--noise-samples"), ("attack_steps", "--attack-steps")):
        if params[key] < 1:
            raise ValueError(f"invalid {option} {params[key]}: must be >= 1")
    if params["attack_noise_samples"] < 1:
        raise ValueError(f"invalid --attack-noise-samples {params['attack_noise_samples']}: must be >= 1")
    if not 0 < params["alpha"] < 1:
        raise ValueError(f"invalid --alpha {params['alpha']}: must be in (0, 1)")


@CELL_KINDS.register("certify")
class Certify(OneModelKind):
    """Randomized smoothing: CERTIFY's certified accuracy (a lower bound) beside SmoothAdv + PREDICT's empirical
    accuracy (an upper bound) per L2 radius, on the same points."""

    def check(self, cell: Cell) -> None:
        check_certify(cell.params)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.evaluation.smoothing import certify_and_attack

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        result = certify_and_attack(
            model,
            split.x,
            split.y,
            sigma=p["sigma"],
            radii=p["radii"],
            n0=p["n0"],
            n=p["noise_samples"],
            alpha=p["alpha"],
            attack_steps=p["attack_steps"],
            noise_samples=p["attack_noise_samples"],
            seed=cell.seed,
            batch_size=cell.batch_size,
            device=device,
        )
        model_cols = {k: meta.get(k, "") for k in ("model", "checkpoint_sha256", "arch", "defense", "dataset")}
        head = {**model_cols, "seed": cell.seed, "n0": p["n0"], "noise_samples": p["noise_samples"]}
        head |= {"alpha": p["alpha"], "attack": "smoothadv", "attack_steps": p["attack_steps"]}
        head |= {"attack_noise_samples": p["attack_noise_samples"]}
        summary = pd.DataFrame([{**head, **rec} for rec in result.summary_records()])
        ids = [int(i) for i in split.index]
        samples = pd.DataFrame(
            [
                {"model": meta.get("model", ""), **rec, "sample_id": ids[rec["sample"]]}
                for rec in result.sample_records()
            ]
        )
        return CellResult(
            tables={"certify": summary, "certify_samples": samples},
            model=meta,
            device=str(device),
            info={"certify_s": result.certify_s, "attack_s": result.attack_s},
        )
