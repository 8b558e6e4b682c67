"""Gaussian noise augmentation (Cohen et al. 2019): the base classifier of a randomized-smoothing model."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.defenses.base import Defense, positive
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.training import StepContext


@DEFENSES.register("gaussian-noise")
class GaussianNoise(Defense):
    """Training with Gaussian noise augmentation: cross-entropy on ``x + sigma * e``, ``e ~ N(0, I)``, one fresh
    draw per image and step, not clipped to [0, 1] (as the noise the smoothed classifier adds at test time).

    Paper: Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019
    (https://arxiv.org/abs/1902.02918), Section 4: the base classifier of ``g(x) = argmax_c P(f(x + sigma * e) =
    c)`` is trained on noisy inputs at the ``sigma`` it will be smoothed with. Certify and attack the smoothed
    classifier with :func:`robustbench_cnn.evaluation.smoothing.certify_and_attack` at the same ``sigma``.
    Norm: L2 (the smoothed classifier's certificate); the threat model is recorded in the card and sets the
    per-epoch PGD monitor, which attacks the *base* classifier (linf is accepted for the monitor too).
    Arguments:
        threat (ThreatModel): the monitor's ball, e.g. ``l2:0.5``.
        sigma (float): standard deviation of the noise, in [0, 1] pixel units (default 0.25; the papers train
            MNIST at 0.25, 0.5, 1.0).
    Cost: one forward + backward per batch (as standard training).

    Example::

        >>> recipe = get_defense("gaussian-noise", threat="l2:0.5", sigma=0.25)
    """

    defaults: dict[str, Any] = {"sigma": 0.25}

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        positive(params, "sigma", self.name)
        return params

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        g = ctx.generator
        noise = torch.randn(x.shape, generator=g, device=g.device).to(device=x.device, dtype=x.dtype)
        with ctx.autocast():
            logits = model(x + self.p["sigma"] * noise)
        self.last_logits = logits.detach()  # accuracy under noise: the loop's training accuracy
        return F.cross_entropy(logits.float(), y)
