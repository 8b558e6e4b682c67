"""FGSM adversarial training with a random start ("fast is better than free", Wong et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustbench_cnn.defenses.base import flag, positive
from robustbench_cnn.defenses.presets import WONG_MNIST_SCHEDULE, Preset
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.defenses.single_step import GUARD_DEFAULTS, SingleStepDefense
from robustbench_cnn.training import StepContext


@DEFENSES.register("fgsm-rs")
class FGSMRS(SingleStepDefense):
    """FGSM-RS: one FGSM step of size ``alpha`` from a uniform random point of the eps ball.

    Paper: Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020
    (https://arxiv.org/abs/2001.03994). The cyclic learning rate of the paper is the loop's default
    ``onecycle`` schedule.
    Norm: linf (the paper); l2 is supported (uniform start in the l2 ball, normalised step).
    Arguments:
        threat (ThreatModel): the training ball.
        alpha (float | None): FGSM step size (default ``1.25 * eps``; the paper: 1.25 eps on CIFAR-10,
            0.375 for eps = 0.3 on MNIST).
        random_start (bool): uniform random initialisation in the ball (default True; False is plain FGSM
            training, prone to catastrophic overfitting).
        clip_start (bool): clip the random start to [0, 1] before the FGSM gradient (default False: the
            gradient is taken at ``x + delta`` as drawn, as in the paper's Algorithm 3 and its MNIST code;
            the training example itself is always inside the ball and [0, 1]).
        guard (bool): the catastrophic-overfitting guard (default True): PGD accuracy on a fixed training
            batch after each epoch; the best state is restored at the end if accuracy collapsed (see
            :class:`defenses.guard.OverfitGuard`). Active when trained through ``defend``.
        guard_steps (int): PGD steps of the guard's check (default 10, step ``eps / 4``; see
            :class:`defenses.guard.OverfitGuard`).
        guard_drop (float): a drop of the check's accuracy by more than this from the best is a collapse
            (default 0.2).
        guard_n (int): training images in the guard's fixed check batch (default 256).
        guard_gap (float): training accuracy (on the FGSM examples) above the check's PGD accuracy by more
            than this after the last epoch is recorded as a ``gap`` event: the model never became robust
            (default 0.5).
    Cost: 2 forward + backward passes per batch (plus the guard's check once per epoch).
    The paper's MNIST settings: ``rbc defend --defense fgsm-rs -m fastcnn -d mnist -t linf:0.3 --alpha 0.375
    --epochs 10 --lr 5e-3 --weight-decay 0 --batch-size 100 --no-normalize``; how they reproduce the paper, seed by
    seed, is in ``docs/measurements.md``.

    Example::

        >>> recipe = get_defense("fgsm-rs", threat="linf:0.3", alpha=0.375)
    """

    defaults: dict[str, Any] = {"alpha": None, "random_start": True, "clip_start": False, **GUARD_DEFAULTS}
    presets = {
        ("mnist", "linf"): Preset(
            source="Wong, Rice, Kolter 2020, MNIST (Sec. 5.1 and their code: alpha 0.375 at eps 0.3, 10 epochs, "
            "Adam with a cyclic lr peaking at 5e-3, batch 100, no weight decay, raw pixels)",
            params={"alpha": 0.375},
            train=WONG_MNIST_SCHEDULE,
            eps=0.3,
            scaled=("alpha",),
        ),
        ("cifar10", "linf"): Preset(
            source="Wong, Rice, Kolter 2020, CIFAR-10 (alpha 1.25 eps, 15 epochs, SGD with a cyclic lr peaking at "
            "0.2, batch 128, weight decay 5e-4)",
            params={},
            train={"epochs": 15, "lr": 0.2, "optimizer": "sgd", "batch_size": 128, "weight_decay": 5e-4},
        ),
    }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["alpha"] is None:
            params["alpha"] = 1.25 * self.threat.eps
        positive(params, "alpha", self.name)
        for name in ("random_start", "clip_start"):
            flag(params, name, self.name)
        return self.resolve_guard(params)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        self.observe(x, y)
        return self.adversarial_ce(
            model,
            x,
            y,
            ctx,
            steps=1,
            alpha=self.p["alpha"],
            start="uniform" if self.p["random_start"] else "none",
            clip_start=self.p["clip_start"],
        )
