"""``explain``: attribution maps of one model's clean and adversarial predictions, and the attribution shift.

The cell attacks ``n`` test points of its dataset with one registered attack inside one norm ball (untargeted, or
targeted with a target policy) and runs :func:`robustbench_cnn.evaluation.explain.explain`: saliency, Integrated
Gradients, occlusion and Grad-CAM (on the layer the architecture declares, ``gradcam_layer`` in the model
registry) of the clean and the adversarial image, compared per point by Spearman rank correlation and top-k
intersection (Ghorbani et al. 2019). It writes no attack-summary rows; its tables are:

- ``explain_samples``: one row per point x method: labels, predictions, attacked/success, perturbation norm, the
  Spearman correlation and the top-k intersection (NaN for a point not attacked), ``k``, and the model columns;
- ``explain_maps``: for the first ``grid_rows`` points, one row per point x image (``x``, ``x_adv``,
  ``clean:<method>``, ``adv:<method>``) with its shape and flattened float values: what the PNG grid shows
  (:mod:`robustbench_cnn.reporting.explain_grid`).
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import pandas as pd

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["Explain", "check_explain", "explain_cell", "map_records"]


def explain_cell(
    model: str,
    dataset: str,
    threat: str,
    attack: str = "pgd",
    *,
    attack_params: dict[str, Any] | None = None,
    target_policy: str | None = None,
    methods: list[str] | None = None,
    config: dict[str, Any] | None = None,
    grid_rows: int = 8,
    n: int | None = 8,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """An ``explain`` cell: ``model`` (store name or checkpoint path) on ``n`` test points of ``dataset``, attacked
    by ``attack`` within ``threat`` (``"linf:0.3"``), untargeted or with ``target_policy``; ``methods`` default to
    all four; ``config``: :class:`~robustbench_cnn.evaluation.explain.AttributionConfig` fields; the maps of the
    first ``grid_rows`` points are kept for the grid."""
    from robustbench_cnn.evaluation.explain import METHODS

    return Cell(
        kind="explain",
        model=model,
        dataset=dataset,
        params={
            "threat": str(threat),
            "attack": attack,
            "attack_params": dict(attack_params or {}),
            "target_policy": target_policy or "",
            "methods": list(methods or METHODS),
            "config": dict(config or {}),
            "grid_rows": int(grid_rows),
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def check_explain(params: dict[str, Any]) -> None:
    """``ValueError`` (or ``UnknownNameError``) naming the first invalid setting of an ``explain`` cell."""
    from robustbench_cnn.attacks import get_attack
    from robustbench_cnn.attacks.targets import parse_policy
    from robustbench_cnn.core.types import ThreatModel
    from robustbench_cnn.evaluation.explain import METHODS, AttributionConfig

    threat = ThreatModel.parse(params["threat"])
    if not isinstance(threat, ThreatModel):
        raise ValueError(f"invalid --threat {params['threat']!r}: explain needs a norm ball NORM:EPS, e.g. linf:0.3")
    attack = get_attack(params["attack"], **params["attack_params"])
    if threat.norm not in attack.norms:
        supported = ", ".join(n.value for n in attack.norms)
        raise ValueError(f"attack {attack.name!r} does not support norm {threat.norm.value}: use {supported}")
    if params["target_policy"]:
        kind, _ = parse_policy(params["target_policy"])
        if kind == "all":
            raise ValueError("--target all is not a per-point target: use random, least-likely, next or class:K")
        if not attack.supports_targeted:
            raise ValueError(f"attack {attack.name!r} does not support targets")
    unknown = [m for m in params["methods"] if m not in METHODS]
    if unknown or not params["methods"]:
        close = [c for m in unknown for c in difflib.get_close_matches(m, METHODS, n=1, cutoff=0.5)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"invalid --methods {','.join(params['methods'])!r}{hint}: use some of {', '.join(METHODS)}")
    try:
        AttributionConfig(**params["config"])
    except TypeError:
        raise ValueError(f"unknown attribution setting(s) in {sorted(params['config'])}") from None
    if params["grid_rows"] < 0:
        raise ValueError(f"invalid --grid-rows (grid_rows) {params['grid_rows']}: must be >= 0")


def map_records(explanation: Any, rows: int, sample_ids: list[int]) -> list[dict[str, Any]]:
    """The ``explain_maps`` records of the first ``rows`` points of an Explanation (see the module docstring)."""
    e = explanation
    records = []
    for i in range(min(rows, e.labels.numel())):
        head = {
            "sample": i,
            "sample_id": sample_ids[i],
            "label": int(e.labels[i]),
            "target": int(e.targets[i]),
            "pred_clean": int(e.pred_clean[i]),
            "pred_adv": int(e.pred_adv[i]),
            "attacked": bool(e.attacked[i]),
            "success": bool(e.success[i]),
            "eps": e.threat.eps,
            "norm": e.threat.norm.value,
            "attack": e.attack,
        }
        images = [("x", e.x[i]), ("x_adv", e.x_adv[i])]
        for method, (clean, adv) in e.maps.items():
            images += [(f"clean:{method}", clean[i][None]), (f"adv:{method}", adv[i][None])]
        for image, value in images:
            records.append(
                {
                    **head,
                    "image": image,
                    "channels": int(value.shape[0]),
                    "height": int(value.shape[1]),
                    "width": int(value.shape[2]),
                    "values": value.float().flatten().tolist(),
                }
            )
    return records


@CELL_KINDS.register("explain")
class Explain(OneModelKind):
    """Saliency, Integrated Gradients, occlusion and Grad-CAM of the clean vs the adversarial prediction, and
    the attribution shift per point (Spearman rank correlation, top-k intersection)."""

    def check(self, cell: Cell) -> None:
        check_explain(cell.params)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.core.types import ThreatModel
        from robustbench_cnn.evaluation.explain import AttributionConfig, explain
        from robustbench_cnn.models import MODELS, gradcam_module

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        arch = str(meta.get("arch", ""))
        layer = gradcam_module(model, arch, int(split.x.shape[-1])) if arch in MODELS else None
        explanation = explain(
            model,
            split.x,
            split.y,
            ThreatModel.parse(p["threat"]),
            p["attack"],
            p["attack_params"],
            target_policy=p["target_policy"] or None,
            methods=p["methods"],
            gradcam_layer=layer,
            config=AttributionConfig(**p["config"]),
            seed=cell.seed,
            batch_size=cell.batch_size,
            device=device,
        )
        ids = [int(i) for i in split.index]
        model_cols = {k: meta.get(k, "") for k in ("model", "checkpoint_sha256", "arch", "defense", "dataset")}
        samples = pd.DataFrame([{**model_cols, **rec} for rec in explanation.sample_records(ids)])
        maps = pd.DataFrame(
            [{"model": meta.get("model", ""), **rec} for rec in map_records(explanation, p["grid_rows"], ids)]
        )
        return CellResult(
            tables={"explain_samples": samples, "explain_maps": maps},
            model=meta,
            device=str(device),
            info={"skipped_methods": explanation.skipped},
        )
