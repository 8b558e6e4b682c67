"""MART (Wang et al. 2020): boosted cross-entropy on adversarial inputs plus a misclassification-weighted KL."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.model_utils import model_mode
from robustbench_cnn.defenses.base import Defense
from robustbench_cnn.defenses.perturb import ce_objective, perturb
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.defenses.trades import inner_step_defaults
from robustbench_cnn.training import StepContext


@DEFENSES.register("mart")
class MART(Defense):
    """MART: ``BCE(f(x'), y) + beta * KL(f(x) || f(x')) * (1 - f_y(x))`` with ``x'`` from PGD on the CE.

    Paper: Wang, Zou, Yi, Bailey, Ma, Gu, "Improving Adversarial Robustness Requires Revisiting
    Misclassified Examples", ICLR 2020 (https://openreview.net/forum?id=rklOg6EFwS).
    Norm: linf (the paper), l2 (normalised steps).
    Arguments:
        threat (ThreatModel): the training ball.
        beta (float): weight of the misclassification-aware KL term (default 6.0).
        steps (int): PGD steps of the inner maximisation (default 10).
        alpha (float | None): inner step size (default ``eps / 4``; the paper: 0.007 for eps = 8/255).
        sigma (float): the inner start ``x + sigma * N(0, 1)`` (default 0.001, as the paper's code).
    BCE is the "boosted" cross-entropy ``CE(f(x'), y) - log(1 - max_{k != y} f_k(x'))``. As in the
    reference code, the inner maximisation runs in eval mode. The training accuracy reported is on the
    adversarial inputs.
    Cost: ``steps + 2`` forward and ``steps + 1`` backward passes per batch.

    Example::

        >>> recipe = get_defense("mart", threat="linf:8/255", beta=6.0)
    """

    defaults: dict[str, Any] = {"beta": 6.0, "steps": 10, "alpha": None, "sigma": 0.001}

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        return inner_step_defaults(self, params)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        with model_mode(model, False):
            x_adv = perturb(
                model,
                x,
                self.threat,
                ce_objective(y),
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
        self.last_logits = logits_adv.detach()
        logits, logits_adv = logits.float(), logits_adv.float()
        probs_adv = F.softmax(logits_adv, dim=1)
        # the most likely wrong class on the adversarial input
        top2 = probs_adv.topk(2, dim=1).indices
        wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
        bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - probs_adv + 1e-12), wrong)
        probs = F.softmax(logits, dim=1)
        p_true = probs.gather(1, y[:, None]).squeeze(1)
        kl = F.kl_div(torch.log(probs_adv + 1e-12), probs, reduction="none").sum(dim=1)
        return bce + self.p["beta"] * (kl * (1.0000001 - p_true)).mean()
