"""``defend``: train a model with a defense, monitor the clean/robust trade-off per epoch, save it.

The loop is :func:`robustbench_cnn.workflows.train_model` (one loop for every recipe); this module adds
an epoch callback that measures clean and PGD accuracy on a fixed held-out slice of the test split and
writes the rows to ``tradeoff_epochs.parquet`` beside the checkpoint. The card's ``recipe`` is the
defense and its ``threat`` the threat model; ``extra`` holds the last PGD accuracy, how it was measured
and the recipe's report (e.g. the FGSM-RS overfitting guard's events).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses import get_defense
from robustbench_cnn.defenses.base import Defense
from robustbench_cnn.defenses.masking import MaskingCheck, Probe
from robustbench_cnn.defenses.perturb import default_pgd_alpha, pgd_robust
from robustbench_cnn.models import NormalizedModel
from robustbench_cnn.store import ModelCard, checkpoint_name, other_threat, save_checkpoint, store_root
from robustbench_cnn.training import EpochStats, TrainConfig, TrainResult
from robustbench_cnn.workflows import train_model

TRADEOFF_FILE = "tradeoff_epochs.parquet"

#: Columns and dtypes of the per-epoch trade-off table.
EPOCH_COLUMNS: dict[str, str] = {
    "checkpoint": "string",
    "defense": "string",
    "threat": "string",
    "epoch": "int64",
    "loss": "float64",
    "train_accuracy": "float64",
    "clean_accuracy": "float64",
    "pgd_accuracy": "float64",
    "lr": "float64",
    "epoch_s": "float64",
    "eval_s": "float64",
    "images_per_s": "float64",
    "guard_pgd_accuracy": "float64",
    "guard_restored": "bool",
    "eval_n": "int64",
    "eval_steps": "int64",
    "probe_accuracy": "float64",
    "masking": "bool",
}


@dataclass
class DefendedModel:
    """What :func:`defend` returns: the trained model (on the CPU), its card, folder and per-epoch table."""

    model: NormalizedModel
    card: ModelCard
    folder: Path
    result: TrainResult
    epochs: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def clean_accuracy(self) -> float:
        """Clean accuracy on the test split (the card's)."""
        return float(self.card.clean_accuracy)  # type: ignore[arg-type]

    @property
    def pgd_accuracy(self) -> float:
        """PGD accuracy of the saved model on the monitor slice (last epoch)."""
        return float(self.epochs["pgd_accuracy"].iloc[-1])

    @property
    def guard_events(self) -> list[dict[str, Any]]:
        return list(self.report.get("guard", {}).get("events", []))


class TradeoffMonitor:
    """Epoch callback: clean and PGD accuracy on a fixed slice, and the masking check (``masking``: probes that must
    not beat PGD on the slice's first points, :class:`defenses.masking.MaskingCheck`); one row per epoch."""

    def __init__(
        self, x: Any, y: Any, threat: ThreatModel, *, steps: int, seed: int, masking: MaskingCheck | None = None
    ) -> None:
        self.x, self.y, self.threat, self.steps, self.seed = x, y, threat, int(steps), seed
        self.masking = masking
        self.rows: list[dict[str, Any]] = []

    def __call__(self, stats: EpochStats, model: nn.Module) -> None:
        t0 = time.perf_counter()
        correct, robust_mask = pgd_robust(model, self.x, self.y, self.threat, steps=self.steps, seed=self.seed)
        clean, robust = float(correct.float().mean()), float(robust_mask.float().mean())
        probe_accuracy, masked = float("nan"), False
        if self.masking is not None and self.threat.eps > 0:
            probe_accuracy, masked = self.masking(
                stats.epoch, model, self.x, self.y, robust_mask, self.threat, self.seed
            )
        stats.extra.update(clean_accuracy=clean, pgd_accuracy=robust)
        self.rows.append(
            {
                "epoch": stats.epoch,
                "loss": stats.loss,
                "train_accuracy": stats.train_accuracy,
                "clean_accuracy": clean,
                "pgd_accuracy": robust,
                "lr": stats.lr,
                "epoch_s": stats.seconds,
                "eval_s": time.perf_counter() - t0,
                "images_per_s": stats.images_per_s,
                "guard_pgd_accuracy": stats.extra.get("guard_pgd_accuracy", float("nan")),
                "guard_restored": bool(stats.extra.get("guard_restored", False)),
                "probe_accuracy": probe_accuracy,
                "masking": masked,
            }
        )

    def table(self, **constants: Any) -> pd.DataFrame:
        frame = pd.DataFrame([{**constants, **row} for row in self.rows], columns=list(EPOCH_COLUMNS))
        return frame.astype(EPOCH_COLUMNS)


def training_problems(epochs: pd.DataFrame, chance: float, robust: bool = True) -> list[str]:
    """Signs that adversarial training failed, read off the per-epoch monitor: clean accuracy still near chance
    at the end (the net never learned: at a large eps from scratch, PGD-AT can stall at the start, see
    ``docs/measurements.md``), or PGD accuracy near zero while clean accuracy is high (catastrophic
    overfitting that the guard could not undo). Each is a sentence for the card and the CLI."""
    last = epochs.iloc[-1]
    problems = []
    if float(last["clean_accuracy"]) < 2 * chance:
        problems.append(
            f"clean accuracy {float(last['clean_accuracy']):.3f} is near chance ({chance:.3f}): the model "
            "did not learn; lower the learning rate or train on a smaller epsilon first"
        )
    elif robust and float(last["pgd_accuracy"]) < 0.05 and float(last["clean_accuracy"]) > 0.5:
        problems.append(
            f"PGD accuracy {float(last['pgd_accuracy']):.3f} with clean {float(last['clean_accuracy']):.3f}:"
            " no robustness (catastrophic overfitting or too weak an inner attack)"
        )
    if robust and "masking" in epochs and bool(last["masking"]):
        problems.append(
            f"masked gradients in the saved model: the monitor's probes broke points its PGD could not (worst case "
            f"{float(last['probe_accuracy']):.3f} vs PGD {float(last['pgd_accuracy']):.3f} on the probed points); "
            "its PGD accuracy over-states robustness"
        )
    return problems


def defend(
    defense: str | Defense,
    arch: str,
    dataset: str,
    threat: ThreatModel | str,
    config: TrainConfig,
    *,
    eval_n: int | None = 500,
    eval_steps: int = 10,
    store: str | os.PathLike | None = None,
    tag: str | None = None,
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    init_from: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    probes: dict[str, Probe] | None = None,
    probe_n: int = 200,
    preset: dict[str, Any] | None = None,
    **defense_params: Any,
) -> DefendedModel:
    """Train ``arch`` on ``dataset`` with ``defense`` against ``threat`` and save it to the store.

    Args:
        defense: a registered defense name (``rbc defend --help``) or a :class:`Defense` instance.
        arch, dataset, config, store, tag, data_dir, subset, init_from, arch_kwargs, progress: as
            :func:`robustbench_cnn.workflows.train_model`.
        threat: the training threat model (``"linf:0.3"``); also the monitor's ball.
        eval_n: size of the fixed held-out slice of the test split for the per-epoch monitor
            (default 500; None = the whole split).
        eval_steps: PGD steps of the monitor (default 10, step ``2.5 * eps / steps``, random start).
        probes: the monitor's masking probes (name -> probe, :class:`defenses.masking.MaskingCheck`; default FGSM
            without random start); ``{}`` turns the check off.
        probe_n: points of the monitor slice the probes attack each epoch (default 200).
        preset: what :func:`defenses.presets.apply_preset` took from the recipe's published settings (recorded in
            the card as ``extra["preset"]``).
        defense_params: the defense's parameters (``steps=``, ``alpha=``, ``beta=``, ...).

    Returns a :class:`DefendedModel`; the checkpoint folder also holds ``tradeoff_epochs.parquet``.
    """
    threat = threat if isinstance(threat, ThreatModel) else ThreatModel.parse_ball(str(threat))
    if isinstance(defense, Defense):
        if defense_params:
            raise ValueError("pass the defense's parameters to its constructor, not to defend()")
        recipe = defense
        if recipe.threat != threat:
            raise ValueError(f"defense {recipe.name!r} was built for {recipe.threat}, not {threat}")
    else:
        recipe = get_defense(defense, threat, **defense_params)
    if eval_steps < 1:
        raise ValueError(f"invalid eval_steps {eval_steps}: must be >= 1")
    held_out = load_split(dataset, "test", n=eval_n, data_dir=data_dir)
    name = checkpoint_name(held_out.info.slug, arch, recipe.name, tag)
    stored = other_threat(store_root(store) / "checkpoints" / name, recipe.threat)
    if stored is not None:  # one name holds one model: retraining would silently replace the first
        raise ValueError(f"checkpoint {name!r} already holds a model trained at {stored}; pass a tag to keep both")
    masking = MaskingCheck(n=probe_n) if probes is None else (MaskingCheck(probes, n=probe_n) if probes else None)
    if recipe.name == "standard":
        masking = None  # no robustness to over-state
    monitor = TradeoffMonitor(held_out.x, held_out.y, threat, steps=eval_steps, seed=config.seed, masking=masking)
    # the recipe's own callbacks (the guard) run first, so the monitor sees the state that is saved
    callbacks = [*recipe.callbacks(config), monitor]
    trained = train_model(
        arch,
        dataset,
        config,
        recipe=recipe,
        store=store,
        tag=tag,
        subset=subset,
        data_dir=data_dir,
        init_from=init_from,
        arch_kwargs=arch_kwargs,
        threat=str(threat),
        callbacks=callbacks,
        progress=progress,
    )
    report = recipe.report()
    epochs = monitor.table(
        checkpoint=trained.card.name,
        defense=recipe.name,
        threat=str(threat),
        eval_n=len(held_out),
        eval_steps=eval_steps,
    )
    card = trained.card
    chance = 1.0 / max(len(card.classes), 1)
    problems = training_problems(epochs, chance, robust=recipe.name != "standard")
    card.extra.update(
        {
            "defense": recipe.name,
            "pgd_accuracy": float(epochs["pgd_accuracy"].iloc[-1]),
            "monitor_clean_accuracy": float(epochs["clean_accuracy"].iloc[-1]),
            "pgd_monitor": {
                "split": "test",
                "n": len(held_out),
                "steps": eval_steps,
                "alpha": default_pgd_alpha(threat, eval_steps),
                "random_start": True,
                "loss": "ce",
                "file": TRADEOFF_FILE,
            },
            "epoch_time_s": round(float(epochs["epoch_s"].sum()), 3),
            "defense_report": report,
            "training_problems": problems,
            "monitor_masking": masking.report() if masking is not None else None,
            "preset": preset,
        }
    )
    folder = save_checkpoint(trained.model, card, directory=trained.folder)  # same weights, updated card
    tmp = folder / f".{TRADEOFF_FILE}.tmp"
    epochs.to_parquet(tmp, index=False)
    os.replace(tmp, folder / TRADEOFF_FILE)
    return DefendedModel(trained.model, card, folder, trained.result, epochs, report)
