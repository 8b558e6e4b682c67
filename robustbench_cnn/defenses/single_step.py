"""The shared part of the single-step recipes (FGSM-RS, N-FGSM): the catastrophic-overfitting guard.

A :class:`SingleStepDefense` declares ``single_step = True``, takes the guard's parameters (``guard``,
``guard_steps``, ``guard_drop``, ``guard_n``, ``guard_gap``; see :class:`defenses.guard.OverfitGuard`), installs the
guard as an epoch callback when trained through ``defend``, feeds it the first training batches and reports its
events in the model card.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from robustbench_cnn.defenses.base import Defense, flag, positive
from robustbench_cnn.defenses.guard import OverfitGuard
from robustbench_cnn.training import EpochCallback, TrainConfig

#: The guard's parameters and their defaults, shared by every single-step recipe.
GUARD_DEFAULTS: dict[str, Any] = {
    "guard": True,
    "guard_steps": 10,
    "guard_drop": 0.2,
    "guard_n": 256,
    "guard_gap": 0.5,
}


class SingleStepDefense(Defense):
    """A recipe with one gradient step per batch, guarded against catastrophic overfitting."""

    single_step: ClassVar[bool] = True

    def resolve_guard(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate the guard's parameters (subclasses call this from ``resolve``)."""
        positive(params, "guard_steps", self.name, integer=True)
        positive(params, "guard_drop", self.name)
        positive(params, "guard_n", self.name, integer=True)
        positive(params, "guard_gap", self.name)
        flag(params, "guard", self.name)
        self.guard: OverfitGuard | None = None
        return params

    def callbacks(self, config: TrainConfig) -> list[EpochCallback]:
        if not self.p["guard"]:
            return []
        self.guard = OverfitGuard(
            self.threat,
            config.epochs,
            steps=self.p["guard_steps"],
            drop=self.p["guard_drop"],
            gap=self.p["guard_gap"],
            n=self.p["guard_n"],
            seed=config.seed,
        )
        return [self.guard]

    def report(self) -> dict[str, Any]:
        return {"guard": self.guard.report()} if self.guard is not None else {}

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Hand the batch to the guard (it keeps the first ``guard_n`` images as its fixed check batch)."""
        if self.guard is not None:
            self.guard.observe(x, y)
