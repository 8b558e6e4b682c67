"""N-FGSM (de Jorge et al. 2022): single-step adversarial training with strong noise and no clipping."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.defenses.base import positive
from robustbench_cnn.defenses.presets import WONG_MNIST_SCHEDULE, Preset
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.defenses.single_step import GUARD_DEFAULTS, SingleStepDefense
from robustbench_cnn.training import StepContext


@DEFENSES.register("n-fgsm")
class NFGSM(SingleStepDefense):
    """N-FGSM: one FGSM step of size ``alpha`` from ``x`` plus uniform noise of radius ``noise * eps``, not
    projected back onto the eps ball.

    Paper: de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez, Dokania, "Make Some Noise: Reliable and Efficient
    Single-Step Adversarial Training", NeurIPS 2022 (https://arxiv.org/abs/2202.01181). Stronger noise and no
    clipping avoid the catastrophic overfitting of FGSM-RS at large epsilons at the same cost.
    Norm: linf (the paper), l2 (uniform noise in the l2 ball, normalised step).
    Arguments:
        threat (ThreatModel): the threat the model is trained for (``eps``).
        noise (float): radius of the uniform noise in units of eps (default 2.0, the paper's k = 2 eps).
        alpha (float | None): FGSM step size (default ``eps``, the paper's).
        eps_ramp (float): epochs over which eps (and with it the noise and the step) grows linearly from 0
            (default 0: none; see :meth:`Defense.ramped_threat`).
        guard, guard_steps, guard_drop, guard_n, guard_gap: the catastrophic-overfitting guard, as in
            ``fgsm-rs`` (default on; see :class:`defenses.guard.OverfitGuard`).
    The training point ``x + delta`` lies in the ball of radius ``noise * eps + alpha`` (3 eps at the defaults)
    and in [0, 1]: the noisy start is clipped to [0, 1] before the gradient, as in the paper's code.
    Cost: 2 forward + backward passes per batch, as FGSM-RS (plus the guard's check once per epoch).

    Example::

        >>> recipe = get_defense("n-fgsm", threat="linf:0.3")
    """

    defaults: dict[str, Any] = {"noise": 2.0, "alpha": None, "eps_ramp": 0.0, **GUARD_DEFAULTS}
    presets = {
        ("mnist", "linf"): Preset(
            source="de Jorge et al. 2022 (step eps, no clipping to the eps ball), trained as Wong et al. 2020 train "
            "on MNIST (10 epochs, Adam with a cyclic lr peaking at 5e-3, batch 100, no weight decay, raw pixels); "
            "ours at MNIST 0.3: noise 1 eps (not the paper's 2) and eps ramped over 5 epochs (the paper's noise 2 "
            "eps overfits from epoch 3 without a ramp and at epoch 4-5 with a 3-epoch one; docs/single_step_at.md)",
            params={"noise": 1.0, "eps_ramp": 5.0},
            train=WONG_MNIST_SCHEDULE,
        ),
        ("cifar10", "linf"): Preset(
            source="de Jorge et al. 2022, CIFAR-10 (noise 2 eps, step eps, 30 epochs, SGD with a cyclic lr peaking "
            "at 0.2, batch 128, weight decay 5e-4)",
            params={"noise": 2.0},
            train={"epochs": 30, "lr": 0.2, "optimizer": "sgd", "batch_size": 128, "weight_decay": 5e-4},
        ),
    }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        positive(params, "noise", self.name, allow_zero=True)
        if params["alpha"] is None:
            params["alpha"] = self.threat.eps
        positive(params, "alpha", self.name)
        positive(params, "eps_ramp", self.name, allow_zero=True)
        return self.resolve_guard(params)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        self.observe(x, y)
        threat, fraction = self.ramped_threat(ctx, self.p["eps_ramp"])
        alpha = self.p["alpha"] * fraction
        cap = 1.0 if threat.norm is Norm.LINF else math.inf  # a linf ball of radius 1 already holds all of [0, 1]
        noise_ball = ThreatModel(threat.norm, min(self.p["noise"] * threat.eps, cap))
        reach = ThreatModel(threat.norm, min(noise_ball.eps + alpha, cap))  # no clipping to the eps ball
        return self.adversarial_ce(
            model,
            x,
            y,
            ctx,
            steps=1,
            alpha=alpha,
            start="uniform" if self.p["noise"] > 0 else "none",
            threat=reach,
            start_threat=noise_ball if self.p["noise"] > 0 else None,
        )
