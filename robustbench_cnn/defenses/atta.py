"""ATTA (Zheng et al. 2020): single-step adversarial training whose perturbations accumulate across epochs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.geometry import random_start
from robustbench_cnn.defenses.base import positive
from robustbench_cnn.defenses.perturb import ce_objective, perturb
from robustbench_cnn.defenses.presets import WONG_MNIST_SCHEDULE, Preset
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.defenses.single_step import GUARD_DEFAULTS, SingleStepDefense
from robustbench_cnn.training import StepContext


@DEFENSES.register("atta")
class ATTA(SingleStepDefense):
    """ATTA-1: one FGSM step per batch that continues, for each training point, from the perturbation that point
    had at the end of its previous epoch, instead of from a fresh random start.

    Paper: Haizhong Zheng, Ziqi Zhang, Juncheng Gu, Honglak Lee & Atul Prakash, "Efficient Adversarial Training with
    Transferable Adversarial Examples", CVPR 2020 (https://arxiv.org/abs/1912.11969). Adversarial perturbations
    transfer between the models of consecutive epochs, so a point's perturbation, carried over and advanced by one
    step per epoch, becomes a multi-step attack at the cost of one step per batch.
    Norm: linf (the paper; sign steps), l2 (normalised steps); every training point is projected onto the eps ball
    and [0, 1].
    Arguments:
        threat (ThreatModel): the training ball (``eps``).
        alpha (float | None): the step size (default ``eps``; on MNIST at 0.3 it gave 1-1.4 points more robust
            accuracy than ``eps / 2`` on two seeds, docs/single_step_at.md).
        eps_ramp (float): epochs over which eps (and with it the step) grows linearly from 0 (default 0: none; see
            :meth:`Defense.ramped_threat`); a kept perturbation is projected onto the ball of the current eps.
        guard, guard_steps, guard_drop, guard_n, guard_gap: the catastrophic-overfitting guard, as in ``fgsm-rs``
            (default on; see :class:`defenses.guard.OverfitGuard`).
    A point's first perturbation is a uniform random point of the ball (FGSM-RS's start). The kept perturbations
    (one image's worth per training point, on the training device) need the loop's point indices
    (``StepContext.indices``, given by ``training.fit``). With augmentation (random crops and flips) a kept
    perturbation is added to the next epoch's augmented image as it is; the paper maps it through the augmentation.
    Cost: 2 forward + backward passes per batch, as FGSM-RS (plus the guard's check once per epoch).

    Example::

        >>> recipe = get_defense("atta", threat="linf:0.3", eps_ramp=5)
    """

    defaults: dict[str, Any] = {"alpha": None, "eps_ramp": 0.0, **GUARD_DEFAULTS}
    presets = {
        ("mnist", "linf"): Preset(
            source="Zheng et al. 2020 (ATTA-1: one step of eps per batch, perturbations kept across epochs), trained "
            "as Wong et al. 2020 train on MNIST (10 epochs, Adam with a cyclic lr peaking at 5e-3, batch 100, no "
            "weight decay, raw pixels); ours: eps ramped over 5 epochs, as n-fgsm's MNIST preset "
            "(docs/single_step_at.md)",
            params={"eps_ramp": 5.0},
            train=WONG_MNIST_SCHEDULE,
        ),
    }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["alpha"] is None:
            params["alpha"] = self.threat.eps
        positive(params, "alpha", self.name)
        positive(params, "eps_ramp", self.name, allow_zero=True)
        self.kept: torch.Tensor | None = None  # the perturbation of every training point so far
        self.visited: torch.Tensor | None = None
        return self.resolve_guard(params)

    def _state(self, x: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.indices is None or ctx.train_size is None:
            raise ValueError("atta keeps a perturbation per training point: its loop must pass the batch's indices")
        shape = (int(ctx.train_size), *x.shape[1:])
        fresh_run = ctx.epoch == 0 and ctx.step == 0
        if fresh_run or self.kept is None or self.kept.shape != shape or self.kept.device != x.device:
            self.kept = torch.zeros(shape, dtype=x.dtype, device=x.device)
            self.visited = torch.zeros(shape[0], dtype=torch.bool, device=x.device)
        return self.kept, self.visited  # type: ignore[return-value]

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        self.observe(x, y)
        kept, visited = self._state(x, ctx)
        idx = ctx.indices.to(x.device)  # type: ignore[union-attr]
        threat, fraction = self.ramped_threat(ctx, self.p["eps_ramp"])
        x = x.detach()
        start = x + kept[idx]  # projected by perturb onto this step's ball (it grows during a ramp)
        first = ~visited[idx]
        if bool(first.any()):
            start[first] = random_start(x[first], threat, ctx.generator, "uniform")
        step = self.p["alpha"] * fraction
        x_adv = perturb(
            model,
            x,
            threat,
            ce_objective(y),
            steps=1,
            alpha=step,
            generator=ctx.generator,
            start=start,
            autocast=ctx.autocast,
        )
        kept[idx], visited[idx] = x_adv - x, True
        return self.ce_on(model, x_adv, y, ctx)
