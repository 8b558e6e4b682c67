"""``rbc defend``'s workflow: train with a defense, then evaluate the kept state honestly.

1. :func:`robustbench_cnn.defenses.train.defend` trains the recipe; its per-epoch monitor runs PGD and the masking
   probes (FGSM without random start, and a short gradient-free Square run added here, since ``defenses`` cannot
   import ``attacks``).
2. The kept state (after the overfitting guard) is evaluated with the default cascade
   (:data:`robustbench_cnn.evaluation.engine.DEFAULT_CASCADE`) on ``final_n`` held-out test points, a seeded sample,
   through the ``whitebox`` cell kind (a run folder, rows through ``tables``). That figure, with ``n`` and its 95%
   Clopper-Pearson interval, is the model's robust accuracy: recorded in the card (``extra["final_eval"]`` and the
   cascade figure ``rbc tradeoff`` reads).
3. Collapse, restore, gap and masking events and a monitor that over-states the final figure become warnings: on the
   terminal (the command prints :attr:`DefendRun.warnings`), in the card, and in the leaderboard's flags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.defenses.base import Defense
from robustbench_cnn.defenses.masking import Probe, fgsm_probe
from robustbench_cnn.defenses.train import DefendedModel, defend
from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE
from robustbench_cnn.training import TrainConfig

__all__ = ["FINAL_EVAL_KEY", "MONITOR_GAP", "DefendRun", "defend_and_evaluate", "square_probe"]

#: Where the end-of-training evaluation is recorded in the model card's ``extra``.
FINAL_EVAL_KEY = "final_eval"
#: The monitor's PGD accuracy may exceed the final cascade's by this much (plus the final figure's CI half-width)
#: before it is reported as over-stated: PGD-10 is weaker than the cascade on any model, masked or not.
MONITOR_GAP = 0.10


def square_probe(n_queries: int = 100) -> Probe:
    """A gradient-free masking probe: Square (Andriushchenko et al. 2020, margin loss, p_init 0.8) with
    ``n_queries`` queries per point (default 100: about 100 forward passes of the probed points per epoch)."""
    attack = get_attack("square", n_queries=n_queries)

    def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int) -> torch.Tensor:
        device = next(model.parameters()).device
        return attack(model, x.to(device), y.to(device), threat, seed=seed).robust.cpu()

    return probe


@dataclass
class DefendRun:
    """What :func:`defend_and_evaluate` returns: the trained model, the final evaluation (None when skipped), its
    run folder and the warnings to print."""

    defended: DefendedModel
    final: dict[str, Any] | None
    run_dir: Path | None
    warnings: list[str] = field(default_factory=list)


def _guard_warnings(defended: DefendedModel) -> list[str]:
    out = []
    for ev in defended.guard_events:
        if ev["event"] == "collapse":
            out.append(
                f"catastrophic overfitting at epoch {ev['epoch']}: the guard's PGD accuracy fell from "
                f"{ev['before']:.3f} (epoch {ev['best_epoch']}) to {ev['after']:.3f}"
            )
        elif ev["event"] == "restored":
            out.append(f"the guard restored epoch {ev['best_epoch']}'s weights: the saved model is that epoch's")
        elif ev["event"] == "gap":
            out.append(
                f"training accuracy {ev['before']:.3f} vs the guard's PGD accuracy {ev['after']:.3f} after the last "
                "epoch: the model fits its training attack rather than being robust"
            )
    masking = (defended.card.extra.get("monitor_masking") or {}).get("events") or []
    for ev in masking:
        out.append(
            f"masking at epoch {ev['epoch']}: probe {ev['probe']} broke {ev['broken_beyond_pgd']} of {ev['n']} points "
            f"the monitor's PGD could not (PGD {ev['pgd_accuracy']:.3f}, probe {ev['probe_accuracy']:.3f})"
        )
    return out


def defend_and_evaluate(
    recipe: Defense,
    arch: str,
    dataset: str,
    config: TrainConfig,
    *,
    final_n: int = 1000,
    cascade: str = DEFAULT_CASCADE,
    square_queries: int = 100,
    out: str | os.PathLike | None = None,
    preset: dict[str, Any] | None = None,
    store: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **defend_kwargs: Any,
) -> DefendRun:
    """Train ``arch`` on ``dataset`` with ``recipe`` (:func:`defenses.train.defend`, masking probes FGSM and Square
    with ``square_queries``; 0: FGSM only), then evaluate the kept state with ``cascade`` (default
    :data:`DEFAULT_CASCADE`) on ``final_n`` seeded held-out test points (0: skip) and record it in the card.

    ``defend_kwargs`` go to :func:`defenses.train.defend` (``eval_n``, ``eval_steps``, ``tag``, ``subset``, ...).
    """
    from robustbench_cnn.pipeline.workflows import evaluate_model, record_cascade_accuracy
    from robustbench_cnn.store import read_card, resolve_checkpoint, update_card

    probes: dict[str, Probe] = {"fgsm": fgsm_probe}
    if square_queries > 0:
        probes["square"] = square_probe(square_queries)
    defended = defend(
        recipe,
        arch,
        dataset,
        recipe.threat,
        config,
        store=store,
        data_dir=data_dir,
        progress=progress,
        probes=probes,
        preset=preset,
        **defend_kwargs,
    )
    warnings = _guard_warnings(defended) + [str(p) for p in defended.card.extra.get("training_problems") or []]
    if final_n <= 0 or recipe.name == "standard" and recipe.threat.eps <= 0:
        return DefendRun(defended, None, None, warnings)
    threat = recipe.threat
    run = evaluate_model(
        defended.card.name,
        cascade=cascade,
        dataset=dataset,
        threat=threat.norm.value,
        eps=[threat.eps],
        n=final_n,
        seed=config.seed,
        out=out,
        data_dir=data_dir,
        store=store,
        device=config.device,
        progress=progress,
    )
    summary = run.summary
    rows = summary[(summary["attack"] == "worst-case")] if summary["attack"].eq("worst-case").any() else summary
    row = rows.iloc[-1]
    robust, n = float(row["robust_acc"]), int(row["n"])
    lo, hi = float(row["robust_acc_lo"]), float(row["robust_acc_hi"])
    monitor = float(defended.epochs["pgd_accuracy"].iloc[-1])
    overstated = monitor > hi + MONITOR_GAP
    if overstated:
        warnings.append(
            f"the per-epoch monitor's PGD accuracy ({monitor:.3f}) over-states robustness: the {cascade} cascade "
            f"leaves {robust:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={n}); masked gradients fooled the monitor"
        )
    final = {
        "cascade": cascade,
        "threat": str(threat),
        "split": "test",
        "n": n,
        "seed": config.seed,
        "robust_accuracy": robust,
        "ci95": [lo, hi],
        "clean_accuracy": float(row["clean_acc"]),
        "monitor_pgd_accuracy": monitor,
        "monitor_overstated": overstated,
        "flags": str(row.get("flags") or ""),
        "run": str(run.run_dir),
        "warnings": list(warnings),
    }
    if not run.recorded:
        record_cascade_accuracy(defended.card.name, summary, store, cascade)
    folder = resolve_checkpoint(defended.card.name, store)
    card = read_card(folder)
    card.extra[FINAL_EVAL_KEY] = final
    update_card(folder, card)
    defended.card = card
    return DefendRun(defended, final, Path(run.run_dir), warnings)
