"""``transfer``: adversarial examples crafted on a white-box source, scored on a black-box target.

The cell's ``model`` is the target (queried for labels only); ``params["sources"]`` are store checkpoints (a
substitute from a ``proxy-train`` cell, any model, or several, ensembled by averaging logits). The source attack
(``fgsm``, ``pgd``, ``mi-fgsm``, ...) runs through
:func:`robustbench_cnn.attacks.blackbox.transfer.transfer_attack` at each epsilon, untargeted or with a target
policy (``all``: every class in turn). Evaluation points are the first ``n`` of the test permutation, capped so
that they stay disjoint from the seed set of any substitute among the sources. Rows: one per policy x eps, with
the ``source`` models and the number of points ``attacked`` (one target query each).
"""

from __future__ import annotations

import functools
import json
import os
from typing import TYPE_CHECKING, Any

import torch

from robustbench_cnn.pipeline.cells.base import (
    CELL_KINDS,
    Cell,
    CellKind,
    CellResult,
    card_meta,
    load_store_model,
    store_weights,
)

if TYPE_CHECKING:
    from robustbench_cnn.attacks.blackbox.transfer import CraftedExamples

__all__ = ["Transfer", "disjoint_n", "transfer_cell"]


def transfer_cell(
    sources: list[str],
    target: str,
    dataset: str,
    norm: str,
    eps: list[float],
    attack: str = "fgsm",
    *,
    attack_params: dict[str, Any] | None = None,
    n: int | None = 1000,
    targeted: bool = False,
    target_policy: str = "random",
    cascade: str = "transfer",
    source_names: list[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``transfer`` cell: ``attack`` crafted on ``sources`` (store checkpoints, ensembled when several) and
    scored on ``target`` at each of ``eps``; ``cascade`` labels the rows, ``source_names`` (optional) the sources
    in the rows' attack parameters."""
    return Cell(
        kind="transfer",
        model=target,
        dataset=dataset,
        params={
            "sources": list(sources),
            "source_names": list(source_names) if source_names else None,
            "attack": attack,
            "attack_params": dict(attack_params or {}),
            "norm": norm,
            "eps": sorted(float(e) for e in eps),
            "targeted": targeted,
            "target_policy": target_policy if targeted else "",
            "cascade": cascade,
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


@functools.cache
def _note_once(message: str) -> None:
    """Print a note once per process (a plan's transfer cells share their substitute, and its note)."""
    from robustbench_cnn.core.progress import console

    console.print(message)


def disjoint_n(n: int | None, total: int, cards: list[Any], dataset: str) -> int:
    """``n`` (None: the whole split of ``total``) capped so that the evaluation points avoid the seed set of every
    substitute among ``cards`` (a note says so, once per process)."""
    n_eff = total if n is None else min(n, total)
    for card in cards:
        limit = (card.extra or {}).get("eval_max_n") if card.recipe == "substitute" else None
        if limit is not None and card.dataset == dataset and n_eff > int(limit):
            _note_once(
                f"[yellow]note:[/] -n reduced from {n_eff} to {limit} so that the evaluation points "
                f"are disjoint from the seed set of substitute {card.name!r}"
            )
            n_eff = int(limit)
    return n_eff


def _records(results: list[Any], policy: str, targeted: bool, cascade: str, source: str, seed: int) -> list[dict]:
    rows = []
    for res in results:
        broken = res.perturbation_norm[res.success].float()
        rows.append(
            {
                "cascade": cascade,
                "attack": res.attack,
                "attack_kind": "transfer",
                "attack_params": json.dumps(res.params, sort_keys=True, default=str),
                "targeted": targeted,
                "target_policy": policy,
                "norm": res.threat.norm.value,
                "eps": res.threat.eps,
                "n": res.n,
                "clean_acc": res.clean_accuracy,
                "robust_acc": res.robust_accuracy,
                "success_rate": res.success_rate,
                "mean_norm": float(broken.mean()) if broken.numel() else float("nan"),
                "median_norm": float(broken.median()) if broken.numel() else float("nan"),
                "mean_queries": float(res.queries.float().mean()) if res.n else 0.0,
                "total_queries": int(res.queries.sum()),
                "elapsed_s": res.elapsed_s,
                "seed": seed,
                "flags": "",
                "source": source,
                "attacked": int((res.queries > 0).sum()),
            }
        )
    return rows


def _sample_records(results: list[Any], y: torch.Tensor, sample_ids: torch.Tensor) -> list[dict]:
    rows = []
    for res in results:
        pred_clean = torch.where(res.clean_correct, y, res.pred_adv)  # unattacked: pred_adv is the clean label
        for i in range(res.n):
            rows.append(
                {
                    "attack": res.attack,
                    "norm": res.threat.norm.value,
                    "eps": res.threat.eps,
                    "sample_id": int(sample_ids[i]),
                    "label": int(y[i]),
                    "clean_correct": bool(res.clean_correct[i]),
                    "success": bool(res.success[i]),
                    "robust": bool(res.robust[i]),
                    "perturbation_norm": float(res.perturbation_norm[i]),
                    "queries": int(res.queries[i]),
                    "pred_clean": int(pred_clean[i]),
                    "pred_adv": int(res.pred_adv[i]),
                    "target": int(res.target[i]),
                }
            )
    return rows


@functools.cache
def crafted_in_this_process() -> CraftedExamples:
    """The :class:`~attacks.blackbox.transfer.CraftedExamples` the transfer cells of this process share."""
    from robustbench_cnn.attacks.blackbox.transfer import CraftedExamples

    return CraftedExamples()


@CELL_KINDS.register("transfer")
class Transfer(CellKind):
    """Transfer a white-box attack from source model(s) to a target, at each epsilon.

    The examples crafted on the source are kept in this process for the next cell that would craft the same ones
    (a plan transfers from one proxy to every model: :class:`~attacks.blackbox.transfer.CraftedExamples`)."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.attacks.blackbox.transfer import _make_attack
        from robustbench_cnn.attacks.targets import parse_policy
        from robustbench_cnn.core.types import ThreatModel

        ThreatModel.parse_curve(cell.params["norm"], cell.params["eps"])
        _make_attack(cell.params["attack"], cell.params.get("attack_params"))  # a white-box registry attack
        if cell.params.get("targeted"):
            parse_policy(cell.params["target_policy"])
        if not cell.params["sources"]:
            raise ValueError("a transfer cell needs at least one source model")

    def weights(self, cell: Cell) -> str:
        return store_weights([*cell.params["sources"], cell.model], cell.store)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.attacks.blackbox.transfer import as_source, transfer_attack
        from robustbench_cnn.attacks.targets import all_targets, choose_targets, parse_policy
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.core.types import Norm
        from robustbench_cnn.data import load_split

        p = cell.params
        device = resolve_device(cell.device)
        target_model, target_card = load_store_model(cell.model, cell, device)
        loaded = [load_store_model(s, cell, device) for s in p["sources"]]
        total = len(load_split(cell.dataset, "test", data_dir=cell.data_dir))
        n_eff = disjoint_n(cell.n, total, [card for _, card in loaded], cell.dataset)
        data = load_split(cell.dataset, "test", n=n_eff, data_dir=cell.data_dir)
        x, y = data.x.to(device), data.y.to(device)
        sources = {card.name: model for model, card in loaded}
        names = p.get("source_names") or list(sources)

        runs: list[tuple[str, torch.Tensor | None]] = [("", None)]
        if p.get("targeted"):
            policy = p["target_policy"]
            kind, _ = parse_policy(policy, data.info.num_classes)
            if kind == "all":
                runs = [(f"class:{k}", torch.full_like(y, k)) for k in all_targets(data.info.num_classes)]
            else:
                source, _ = as_source(sources)
                with torch.no_grad():
                    logits = source.eval()(x) if kind == "least-likely" else None
                generator = torch.Generator().manual_seed(cell.seed)
                runs = [(policy, choose_targets(policy, logits, y, data.info.num_classes, generator))]

        summary, samples = [], []
        for policy, targets in runs:
            results = transfer_attack(
                sources,
                target_model,
                x,
                y,
                Norm.parse(p["norm"]),
                p["attack"],
                eps_list=p["eps"],
                targets=targets,
                seed=cell.seed,
                attack_params=p.get("attack_params") or None,
                source_names=names,
                target_name=target_card.name,
                crafted=crafted_in_this_process(),
            )
            source = ",".join(sources)
            summary += _records(results, policy, targets is not None, p.get("cascade", "transfer"), source, cell.seed)
            samples += _sample_records(results, y, data.index)
        return CellResult(
            summary=summary,
            samples=samples,
            model=card_meta(target_card, cell.dataset),
            device=str(device),
            info={"n": n_eff},
        )
