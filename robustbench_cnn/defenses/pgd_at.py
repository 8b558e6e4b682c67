"""PGD adversarial training (Madry et al. 2018)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustbench_cnn.defenses.base import Defense, flag, positive
from robustbench_cnn.defenses.perturb import default_pgd_alpha
from robustbench_cnn.defenses.presets import WONG_MNIST_SCHEDULE, Preset
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.training import StepContext


@DEFENSES.register("pgd-at")
class PGDAT(Defense):
    """PGD adversarial training: minimise the cross-entropy of the worst case found by k-step PGD.

    Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018 (https://arxiv.org/abs/1706.06083).
    Norm: linf (signed steps), l2 (normalised steps); projected onto the eps ball and [0, 1].
    Arguments:
        threat (ThreatModel): the training ball.
        steps (int): PGD steps of the inner maximisation (default 10; the paper: 40 on MNIST, 7 on CIFAR-10).
        alpha (float | None): step size (default ``2.5 * eps / steps``; the paper: 0.01 on MNIST, 2/255 on CIFAR).
        eps_ramp (float): epochs over which the training epsilon (and alpha) grow linearly from 0 (default 0: the
            full ball from the start; at a large epsilon from scratch PGD-AT can stall at chance without one, see
            ``docs/measurements.md``).
        random_start (bool): start at a uniform point of the ball (default True, as in the paper).
    The inner maximisation runs in the model's training mode, as in the reference implementations;
    the loss is the cross-entropy on the adversarial batch only (100% adversarial).
    Cost: ``steps + 1`` forward + backward passes per batch.

    Example::

        >>> recipe = get_defense("pgd-at", threat="linf:0.3", steps=40, alpha=0.01)
    """

    defaults: dict[str, Any] = {"steps": 10, "alpha": None, "random_start": True, "eps_ramp": 0.0}
    presets = {
        ("mnist", "linf"): Preset(
            source="Madry et al. 2018, MNIST inner maximisation (40 steps of 0.01 at eps 0.3, random start), trained "
            "on Wong et al. 2020's MNIST schedule (10 epochs, Adam with a cyclic lr peaking at 5e-3, batch 100, no "
            "weight decay, raw pixels; Madry et al. train 83 epochs) with eps ramped over 2 epochs (from scratch at "
            "0.3 PGD-AT can stall at chance, docs/measurements.md)",
            params={"steps": 40, "alpha": 0.01, "random_start": True, "eps_ramp": 2.0},
            train=WONG_MNIST_SCHEDULE,
            eps=0.3,
            scaled=("alpha",),
        ),
        ("cifar10", "linf"): Preset(
            source="Madry et al. 2018, CIFAR-10 (7 steps of 2/255 at eps 8/255, random start)",
            params={"steps": 7, "alpha": 2 / 255, "random_start": True},
            eps=8 / 255,
            scaled=("alpha",),
        ),
    }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        positive(params, "steps", self.name, integer=True)
        if params["alpha"] is None:
            params["alpha"] = default_pgd_alpha(self.threat, params["steps"])
        positive(params, "alpha", self.name)
        flag(params, "random_start", self.name)
        positive(params, "eps_ramp", self.name, allow_zero=True)
        return params

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        threat, fraction = self.ramped_threat(ctx, self.p["eps_ramp"])
        return self.adversarial_ce(
            model,
            x,
            y,
            ctx,
            steps=self.p["steps"],
            alpha=self.p["alpha"] * fraction,
            start="uniform" if self.p["random_start"] else "none",
            threat=threat,
        )
