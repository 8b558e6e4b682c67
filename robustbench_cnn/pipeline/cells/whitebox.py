"""``whitebox``: one model x dataset x attack cascade x norm x epsilon list, untargeted or targeted.

The cascade (``fast``: the default, ``quick``, ``standard``, ``plus``, or comma-separated attack names; one attack with
``attack_params``) runs through :func:`robustbench_cnn.evaluation.engine.evaluate`: per-sample worst case, later
attacks only on still-robust points, along the growing epsilon ball. Rows: one per attack x eps (robust accuracy
and success rate after that attack, cumulative) plus a ``worst-case`` row per eps when the cascade has several
attacks; samples: one per sample x eps for the worst case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE
from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellKind, CellResult, card_meta, store_weights

__all__ = ["Whitebox", "prepare_cell", "sample_records", "summary_records", "whitebox_cell"]


def whitebox_cell(
    model: str,
    dataset: str,
    norm: str,
    eps: list[float],
    cascade: str = DEFAULT_CASCADE,
    *,
    attack_params: dict[str, Any] | None = None,
    n: int | None = 1000,
    targeted: bool = False,
    target_policy: str = "random",
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    model_def: str | None = None,
    weights: str | None = None,
    defense: str = "",
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``whitebox`` cell: ``model`` (store name or checkpoint path; a label with ``model_def``, a bring-your-own
    ``file.py:factory`` with optional ``weights``) on ``dataset`` against ``cascade`` at each of ``eps``."""
    return Cell(
        kind="whitebox",
        model=model,
        dataset=dataset,
        params={
            "norm": norm,
            "eps": sorted(float(e) for e in eps),
            "cascade": cascade,
            "attack_params": dict(attack_params or {}),
            "targeted": targeted,
            "target_policy": target_policy if targeted else "",
            "model_def": model_def,
            "weights": weights,
            "defense": defense,
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def model_def_weights(model_def: str, weights: str | None) -> str:
    """A bring-your-own model is its file and its weights: the sha256 of both (empty for a missing file, which
    is reported when the cell loads it)."""
    from robustbench_cnn.store import sha256_file

    files = [Path(model_def.rsplit(":", 1)[0])] + ([Path(weights)] if weights else [])
    return ":".join(sha256_file(path) if path.is_file() else "" for path in files)


def load_cell_model(cell: Cell, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The cell's model on ``device`` and its metadata for the results rows."""
    p = cell.params
    if p.get("model_def"):
        from robustbench_cnn.byom import load_model_def

        model, sha = load_model_def(p["model_def"], p.get("weights"), device)
        meta = {"model": cell.model, "checkpoint_sha256": sha, "arch": p["model_def"], "defense": p.get("defense", "")}
        return model, {**meta, "dataset": cell.dataset, "split": "test"}
    from robustbench_cnn.workflows import load_for_dataset

    model, card = load_for_dataset(cell.model, cell.dataset, device, cell.store, cell.data_dir)
    meta = card_meta(card, cell.dataset)
    if p.get("defense"):
        meta["defense"] = p["defense"]
    return model, meta


def prepare_cell(cell: Cell, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any], Any]:
    """Seed, then the cell's model (checked against its dataset when it is a bring-your-own model), its metadata
    and its test split: what every evaluation of a cell starts from."""
    from robustbench_cnn.core.devices import seed_everything
    from robustbench_cnn.data import load_split

    seed_everything(cell.seed)
    model, meta = load_cell_model(cell, device)
    split = load_split(cell.dataset, "test", n=cell.n, data_dir=cell.data_dir)
    if cell.params.get("model_def"):
        from robustbench_cnn.byom import check_input

        check_input(
            model, split.x[:2].to(device), cell.params["model_def"], cell.dataset, num_classes=split.info.num_classes
        )
    return model, meta, split


def pinned_weights(cell: Cell) -> str:
    """What a cell of one model evaluates: the store card's weights, or a bring-your-own model's files."""
    if cell.params.get("model_def"):
        return model_def_weights(cell.params["model_def"], cell.params.get("weights"))
    return store_weights([cell.model], cell.store)


class OneModelKind(CellKind):
    """A kind whose cell evaluates its one model (a store name or a bring-your-own model): pins that model's
    weights into the cell id (:func:`pinned_weights`)."""

    def weights(self, cell: Cell) -> str:
        return pinned_weights(cell)


# ------------------------------------------------------------------------------------------------- records


def _safe_div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _norm_stats(norms: torch.Tensor) -> dict[str, float]:
    if not norms.numel():
        return {"mean_norm": float("nan"), "median_norm": float("nan")}
    return {"mean_norm": float(norms.float().mean()), "median_norm": float(norms.float().median())}


def _query_stats(queries: torch.Tensor) -> dict[str, Any]:
    total = int(queries.sum())
    return {"total_queries": total, "mean_queries": float(queries.float().mean()) if queries.numel() else 0.0}


def summary_records(evaluation: Any, cascade: str) -> list[dict[str, Any]]:
    """One record per attack x eps of an :class:`~robustbench_cnn.evaluation.engine.Evaluation` (robust accuracy
    and success rate after that attack in the cascade, both cumulative), plus one ``worst-case`` record per eps
    when the cascade has several attacks. ``cascade`` is the label of the ``cascade`` column."""
    ev = evaluation
    clean = ev.clean_accuracy
    attacked = int(ev.attackable.sum())
    n = int(ev.labels.numel())
    rows = []
    for o in ev.outcomes:
        codes = ";".join(sorted({f.code for f in ev.flags_at(o.eps)}))
        base = {
            "cascade": cascade,
            "norm": ev.norm.value,
            "eps": o.eps,
            "clean_acc": clean,
            "n": n,
            "targeted": ev.targeted,
            "target_policy": ev.target_policy or "",
            "seed": ev.seed,
            "flags": codes,
        }
        for attack, step, cum in zip(ev.attacks, o.steps, o.cumulative_robust):
            rows.append(
                {
                    **base,
                    "attack": attack.name,
                    "attack_kind": attack.kind,
                    "attack_params": json.dumps(attack.params, sort_keys=True, default=str),
                    "robust_acc": cum,
                    "success_rate": _safe_div(round((clean - cum) * n), attacked),
                    **_norm_stats(step.perturbation_norm[step.success]),
                    **_query_stats(step.queries),
                    "elapsed_s": step.elapsed_s,
                }
            )
        if len(ev.attacks) > 1:
            broken = ~o.robust & ev.clean_correct
            rows.append(
                {
                    **base,
                    "attack": "worst-case",
                    "attack_kind": "cascade",
                    "attack_params": json.dumps([a.name for a in ev.attacks]),
                    "robust_acc": float(o.robust.float().mean()),
                    "success_rate": _safe_div(int(broken.sum()), attacked),
                    **_norm_stats(o.perturbation_norm[broken]),
                    **_query_stats(o.queries),
                    "elapsed_s": o.elapsed_s,
                }
            )
    return rows


def sample_records(evaluation: Any, sample_ids: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """One record per sample x eps of an Evaluation for the worst case: robust, which attack broke it, its
    perturbation norm and queries, clean and adversarial predictions, target (-1 untargeted)."""
    ev = evaluation
    ids = sample_ids if sample_ids is not None else torch.arange(ev.labels.numel())
    names = [a.name for a in ev.attacks]
    correct = ev.clean_correct
    rows = []
    for o in ev.outcomes:
        for i in range(ev.labels.numel()):
            b = int(o.broken_by[i])
            rows.append(
                {
                    "attack": names[b] if b >= 0 else "",
                    "norm": ev.norm.value,
                    "eps": o.eps,
                    "sample_id": int(ids[i]),
                    "label": int(ev.labels[i]),
                    "clean_correct": bool(correct[i]),
                    "success": b >= 0,
                    "robust": bool(o.robust[i]),
                    "perturbation_norm": float(o.perturbation_norm[i]),
                    "queries": int(o.queries[i]),
                    "pred_clean": int(ev.pred_clean[i]),
                    "pred_adv": int(o.pred_adv[i]),
                    "target": int(ev.targets[i]),
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------- the kind


@CELL_KINDS.register("whitebox")
class Whitebox(OneModelKind):
    """Evaluate one model against an attack cascade along an epsilon list (untargeted, or targeted with a
    ``random`` / ``least-likely`` / ``next`` / ``class:K`` policy)."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.core.types import ThreatModel
        from robustbench_cnn.evaluation.engine import check_attack_names

        ThreatModel.parse_curve(cell.params["norm"], cell.params["eps"])
        check_attack_names(cell.params["cascade"])

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.core.types import Norm
        from robustbench_cnn.evaluation.engine import evaluate

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        attacks: Any = p["cascade"]
        if p.get("attack_params") and "," not in p["cascade"]:
            attacks = [(p["cascade"], p["attack_params"])]
        evaluation = evaluate(
            model,
            split.x,
            split.y,
            Norm.parse(p["norm"]),
            p["eps"],
            attacks,
            targeted=bool(p.get("targeted")),
            target_policy=p.get("target_policy") or "random",
            seed=cell.seed,
            batch_size=cell.batch_size,
            progress=progress,
            device=device,
        )
        return CellResult(
            summary=summary_records(evaluation, p["cascade"]),
            samples=sample_records(evaluation, split.index),
            model=meta,
            device=str(device),
        )
