"""``minimal-norm``: one run of a minimal-norm attack gives the whole robustness curve, beside the growing ball.

The cell runs :func:`robustbench_cnn.evaluation.minimal_norm.compare_minimal_norm`: the minimal-norm attack
(``fmn``, Pintor et al. NeurIPS 2021; ``fab``, Croce and Hein ICML 2020; ``ddn``, Rony et al. CVPR 2019) runs once
with the largest epsilon as its bound, and each point is robust at ``eps`` when its smallest adversarial norm found
is larger than ``eps``; the growing-ball cascade (default ``pgd``) runs once per epsilon on the same points. Its
summary rows, per epsilon: the minimal-norm attack's curve (``attack_kind`` ``minimal-norm``, ``elapsed_s`` the one
run's seconds), the growing ball's (``attack`` ``growing-ball``) and the per-sample worst case of the two
(``worst-case``, the figure to report). Tables: ``minimal_norm`` (:meth:`MinimalNormComparison.rows`),
``minimal_norm_attacks`` (:meth:`MinimalNormComparison.attack_rows`) and ``minimal_norms`` (each point's norm).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["MinimalNorm", "minimal_norm_cell"]


def minimal_norm_cell(
    model: str,
    dataset: str,
    norm: str,
    eps: list[float],
    attack: str = "fmn",
    *,
    attack_params: dict[str, Any] | None = None,
    growing_ball: str = "pgd",
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
    """A ``minimal-norm`` cell: ``attack`` (a registered minimal-norm attack, with ``attack_params``) run once on
    ``model`` with bound ``max(eps)``, its curve at each of ``eps`` beside the ``growing_ball`` cascade's."""
    return Cell(
        kind="minimal-norm",
        model=model,
        dataset=dataset,
        params={
            "norm": norm,
            "eps": sorted(float(e) for e in eps),
            "attack": attack,
            "attack_params": dict(attack_params or {}),
            "growing_ball": growing_ball,
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


@CELL_KINDS.register("minimal-norm")
class MinimalNorm(OneModelKind):
    """A minimal-norm attack's one-run curve, the growing-ball curve and their per-sample worst case."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.attacks import ATTACKS
        from robustbench_cnn.core.types import ThreatModel
        from robustbench_cnn.evaluation.engine import check_attack_names
        from robustbench_cnn.evaluation.minimal_norm import is_minimal_norm

        ThreatModel.parse_curve(cell.params["norm"], cell.params["eps"])
        if not is_minimal_norm(ATTACKS.get(cell.params["attack"])):
            raise ValueError(f"attack {cell.params['attack']!r} is not a minimal-norm attack (fmn, fab, ddn)")
        check_attack_names(cell.params["growing_ball"])

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.evaluation.minimal_norm import compare_minimal_norm

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        comparison = compare_minimal_norm(
            model,
            split.x,
            split.y,
            p["norm"],
            p["eps"],
            minimal_attacks=[(p["attack"], p["attack_params"])],
            growing_ball=p["growing_ball"],
            seed=cell.seed,
            batch_size=cell.batch_size,
            device=device,
        )
        run = comparison.runs[0]
        clean = comparison.best.clean_correct
        n = comparison.n
        attacked = int(clean.sum())
        summary = []
        for eps in comparison.eps_list:
            base = {"cascade": p["attack"], "norm": p["norm"], "eps": eps, "n": n, "seed": cell.seed}
            base |= {"clean_acc": float(clean.double().mean()), "targeted": False, "target_policy": ""}
            broken = run.broken & (run.norms <= eps)
            norms = run.norms[broken]
            robust = {
                p["attack"]: run.robust(eps),
                "growing-ball": comparison.growing_ball_robust(eps),
                "worst-case": comparison.worst_case_robust(eps),
            }
            for name, robust_mask in robust.items():
                kind = {p["attack"]: "minimal-norm", "growing-ball": "cascade"}.get(name, "worst-case")
                params = p["attack_params"] if name == p["attack"] else p["growing_ball"]
                row = {**base, "attack": name, "attack_kind": kind}
                row["attack_params"] = json.dumps(params, sort_keys=True, default=str)
                row["robust_acc"] = float(robust_mask.double().mean())
                row["success_rate"] = float((clean & ~robust_mask).sum()) / attacked if attacked else float("nan")
                if name == p["attack"]:
                    row["mean_norm"] = float(norms.mean()) if norms.numel() else float("nan")
                    row["median_norm"] = float(norms.median()) if norms.numel() else float("nan")
                    row["elapsed_s"] = run.elapsed_s
                elif name == "growing-ball":
                    row["elapsed_s"] = comparison.growing_ball_s
                summary.append(row)
        ids = [int(i) for i in split.index]
        per_sample = pd.DataFrame(
            {"sample_id": ids, "attack": run.attack, "norm": p["norm"], "minimal_norm": run.norms.tolist()}
        )
        return CellResult(
            summary=summary,
            tables={
                "minimal_norm": pd.DataFrame(comparison.rows()).assign(model=meta.get("model", "")),
                "minimal_norm_attacks": pd.DataFrame(comparison.attack_rows()).assign(model=meta.get("model", "")),
                "minimal_norms": per_sample.assign(model=meta.get("model", "")),
            },
            model=meta,
            device=str(device),
        )
