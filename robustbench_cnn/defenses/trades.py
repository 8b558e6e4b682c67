"""TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the KL to the adversarial prediction."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.model_utils import model_mode
from robustbench_cnn.defenses.base import Defense, positive
from robustbench_cnn.defenses.perturb import kl_divergence, kl_objective, perturb
from robustbench_cnn.defenses.presets import WONG_MNIST_SCHEDULE, Preset
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.training import StepContext


def inner_step_defaults(defense: Defense, params: dict[str, Any]) -> dict[str, Any]:
    """Shared by TRADES and MART: ``steps``, ``alpha`` (default ``eps / 4``), ``beta`` and ``sigma`` validated."""
    positive(params, "steps", defense.name, integer=True)
    positive(params, "sigma", defense.name, allow_zero=True)
    if params["alpha"] is None:
        params["alpha"] = defense.threat.eps / 4
    positive(params, "alpha", defense.name)
    positive(params, "beta", defense.name, allow_zero=True)
    return params


@DEFENSES.register("trades")
class TRADES(Defense):
    """TRADES: ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'`` maximising the KL in the ball.

    Paper: Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off between Robustness
    and Accuracy", ICML 2019 (https://arxiv.org/abs/1901.08573).
    Norm: linf (signed steps, the paper), l2 (normalised steps).
    Arguments:
        threat (ThreatModel): the training ball.
        beta (float): weight of the robust KL term (default 6.0; larger is more robust, less accurate).
        steps (int): steps of the inner KL maximisation (default 10).
        alpha (float | None): inner step size (default ``eps / 4``; the paper: 0.007 for eps = 0.031 on
            CIFAR-10, and 0.01 with 40 steps for eps = 0.3 on MNIST).
        sigma (float): the inner start ``x + sigma * N(0, 1)`` (default 0.001, as the paper's code).
    As in the reference code, the inner maximisation runs in eval mode and the KL is summed over
    classes and averaged over the batch. The training accuracy reported is on clean inputs.
    Cost: ``steps + 2`` forward and ``steps + 1`` backward passes per batch.

    Example::

        >>> recipe = get_defense("trades", threat="linf:8/255", beta=6.0)
    """

    defaults: dict[str, Any] = {"beta": 6.0, "steps": 10, "alpha": None, "sigma": 0.001}
    presets = {
        ("mnist", "linf"): Preset(
            source="Zhang et al. 2019, MNIST inner maximisation (40 steps of 0.01 at eps 0.3, beta 6), trained on "
            "Wong et al. 2020's MNIST schedule (10 epochs, Adam with a cyclic lr peaking at 5e-3, batch 100, no weight "
            "decay, raw pixels; Zhang et al. train SmallCNN 100 epochs with SGD)",
            params={"steps": 40, "alpha": 0.01, "beta": 6.0},
            train=WONG_MNIST_SCHEDULE,
            eps=0.3,
            scaled=("alpha",),
        ),
        ("cifar10", "linf"): Preset(
            source="Zhang et al. 2019, CIFAR-10 (10 steps of 0.007 at eps 0.031, beta 6)",
            params={"steps": 10, "alpha": 0.007, "beta": 6.0},
            eps=0.031,
            scaled=("alpha",),
        ),
    }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        return inner_step_defaults(self, params)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        with model_mode(model, False), torch.no_grad(), ctx.autocast():
            clean_ref = model(x)
        with model_mode(model, False):
            x_adv = perturb(
                model,
                x,
                self.threat,
                kl_objective(clean_ref),
                steps=self.p["steps"],
                alpha=self.p["alpha"],
                generator=ctx.generator,
                start="normal",
                sigma=self.p["sigma"],
                autocast=ctx.autocast,
            )
        with ctx.autocast():
            logits = model(x)
            logits_adv = model(x_adv)
        self.last_logits = logits.detach()
        robust = kl_divergence(logits, logits_adv).mean()  # gradient flows through both predictions
        return F.cross_entropy(logits.float(), y) + self.p["beta"] * robust
