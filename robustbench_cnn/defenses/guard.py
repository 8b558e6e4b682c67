"""Catastrophic-overfitting guard (Wong, Rice, Kolter 2020, "Fast is better than free").

Single-step adversarial training can collapse within one epoch: FGSM accuracy shoots up while PGD
accuracy falls to ~0. Wong et al. detect it by PGD accuracy on a training minibatch at the end of each
epoch. This guard measures PGD accuracy on one *fixed* training batch after every epoch, keeps a copy of
the best state (by that accuracy), records an event whenever accuracy drops more than ``drop`` below the
best, and at the last epoch restores the best state if the model is still collapsed. It also records a
``gap`` event when, after the last epoch, the training accuracy on the recipe's own (FGSM) examples
exceeds the PGD accuracy by more than ``gap``: catastrophic overfitting that set in before the model
ever became robust, which shows no drop and which no restore can fix (train again with a smaller step,
other hyper-parameters, or PGD-AT). Early in training such a gap is common and often heals.

Events are dicts ``{"event", "epoch", "best_epoch", "before", "after"}``: for ``collapse`` the best and the
current PGD accuracy, for ``restored`` the PGD accuracy before and after the restore, for ``gap`` the
training accuracy and the PGD accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.defenses.perturb import pgd_accuracy
from robustbench_cnn.training import EpochStats


class OverfitGuard:
    """An epoch callback ``guard(stats, model)``; feed it a training batch with :meth:`observe` first.

    Arguments:
        threat (ThreatModel): the ball of the PGD check.
        epochs (int): the last epoch (where the best state is restored if needed).
        steps (int): PGD steps of the check (default 10; step ``2.5 * eps / steps``, i.e. ``eps / 4`` as in Wong et
            al.'s check, who take 5 steps; why 10: ``docs/measurements.md``).
        n (int): images in the fixed check batch, taken from the first training batches (default 256;
            Wong et al. use one minibatch of 128; fewer images make the check noisy).
        drop (float): a fall of PGD accuracy by more than this from the best is a collapse (default 0.2).
        gap (float): training accuracy above PGD accuracy by more than this after the last epoch is a
            ``gap`` event (default 0.5).
        seed (int): seed of the PGD random start (the same every epoch, so epochs are comparable).
    """

    def __init__(
        self,
        threat: ThreatModel,
        epochs: int,
        *,
        steps: int = 10,
        drop: float = 0.2,
        gap: float = 0.5,
        n: int = 256,
        seed: int = 0,
    ) -> None:
        self.threat, self.epochs, self.steps, self.drop, self.seed = threat, int(epochs), int(steps), float(drop), seed
        self.gap = float(gap)
        self.n = int(n)
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.best_accuracy = float("-inf")
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.restored_epoch: int | None = None
        self._collapsed = False

    def observe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Collect the first ``n`` training images seen as the fixed check batch (later calls: no-op)."""
        have = 0 if self.batch is None else len(self.batch[1])
        if have >= self.n:
            return
        x, y = x[: self.n - have].detach().clone(), y[: self.n - have].detach().clone()
        self.batch = (x, y) if self.batch is None else (torch.cat([self.batch[0], x]), torch.cat([self.batch[1], y]))

    def __call__(self, stats: EpochStats, model: nn.Module) -> None:
        if self.batch is None:
            return
        _, acc = pgd_accuracy(model, *self.batch, self.threat, steps=self.steps, seed=self.seed)
        self.update(stats.epoch, acc, model, train_accuracy=stats.train_accuracy)
        stats.extra["guard_pgd_accuracy"] = acc
        stats.extra["guard_restored"] = self.restored_epoch is not None

    def update(self, epoch: int, accuracy: float, model: nn.Module, train_accuracy: float = math.nan) -> None:
        """Record the check's ``accuracy`` after ``epoch`` (1-based) and the epoch's ``train_accuracy``;
        may restore the best state."""
        self.history.append(
            {
                "epoch": epoch,
                "pgd_accuracy": accuracy,
                "train_accuracy": None if math.isnan(train_accuracy) else train_accuracy,
            }
        )
        if accuracy >= self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        collapsed = accuracy < self.best_accuracy - self.drop
        if collapsed and not self._collapsed:
            self.events.append(
                {
                    "event": "collapse",
                    "epoch": epoch,
                    "best_epoch": self.best_epoch,
                    "before": self.best_accuracy,
                    "after": accuracy,
                }
            )
        self._collapsed = collapsed
        if epoch >= self.epochs and collapsed and self.best_state is not None:
            model.load_state_dict(self.best_state)
            self.restored_epoch = self.best_epoch
            self.events.append(
                {
                    "event": "restored",
                    "epoch": epoch,
                    "best_epoch": self.best_epoch,
                    "before": accuracy,
                    "after": self.best_accuracy,
                }
            )
        elif epoch >= self.epochs and train_accuracy - accuracy > self.gap:  # early gaps can heal (MNIST does)
            self.events.append(
                {
                    "event": "gap",
                    "epoch": epoch,
                    "best_epoch": self.best_epoch,
                    "before": train_accuracy,
                    "after": accuracy,
                }
            )

    @property
    def fired(self) -> bool:
        """Whether a collapse or a gap was detected at any epoch."""
        return any(e["event"] in ("collapse", "gap") for e in self.events)

    def report(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "drop": self.drop,
            "gap": self.gap,
            "batch_size": 0 if self.batch is None else len(self.batch[1]),
            "history": list(self.history),
            "events": list(self.events),
            "fired": self.fired,
            "restored_epoch": self.restored_epoch,
        }
