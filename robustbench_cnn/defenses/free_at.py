"""Free adversarial training (Shafahi et al. 2019): every backward pass also updates the perturbation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.geometry import ascent_direction, project
from robustbench_cnn.defenses.base import Defense, positive
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.training import StepContext


@DEFENSES.register("free-at")
class FreeAT(Defense):
    """Free-AT: each minibatch is replayed ``replays`` times; the gradient of each replay's single backward
    pass updates both the weights (by the loop's optimizer) and the perturbation (by ``alpha * sign``),
    and the perturbation carries over to the next minibatch.

    Paper: Shafahi, Najibi, Ghiasi, Xu, Dickerson, Studer, Davis, Taylor, Goldstein, "Adversarial Training
    for Free!", NeurIPS 2019 (https://arxiv.org/abs/1904.12843).
    Norm: linf (the paper), l2 (normalised steps).
    Arguments:
        threat (ThreatModel): the training ball.
        replays (int): replays ``m`` of each minibatch (default 8, the paper's CIFAR-10 setting).
        alpha (float | None): perturbation step per replay (default ``eps``, as the paper).
    In this loop, step ``s`` trains on the minibatch drawn at step ``m * floor(s / m)``: an epoch of the
    loop costs one standard epoch and covers ``1 / m`` of the data ``m`` times, so ``epochs`` here are
    the paper's ``epochs * m`` (its "N_ep / m passes, each replayed m times"). The loop's training accuracy
    is not reported (NaN): the replayed labels are not the loop's batch.
    Cost: one forward + backward pass per step, like standard training.

    Example::

        >>> recipe = get_defense("free-at", threat="linf:8/255", replays=8)
    """

    defaults: dict[str, Any] = {"replays": 8, "alpha": None}

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        positive(params, "replays", self.name, integer=True)
        if params["alpha"] is None:
            params["alpha"] = self.threat.eps
        positive(params, "alpha", self.name)
        self._held: tuple[torch.Tensor, torch.Tensor] | None = None
        self._delta: torch.Tensor | None = None  # the perturbation, carried across minibatches (batch-sized)
        self._leaf: torch.Tensor | None = None  # the slice used by the last step (its .grad feeds the next)
        return params

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        if ctx.epoch == 0 and ctx.step == 0:  # a new run: nothing carries over from an earlier one
            self._held = self._delta = self._leaf = None
        if self._held is None or ctx.step % self.p["replays"] == 0:
            self._held = (x, y)
        xh, yh = self._held
        n = xh.shape[0]
        if self._delta is None or self._delta.shape[1:] != xh.shape[1:] or self._delta.shape[0] < n:
            self._delta, self._leaf = torch.zeros_like(xh), None
        leaf = self._leaf
        if leaf is not None and leaf.grad is not None:  # the previous replay's backward pass: ascend the loss
            self._delta[: leaf.shape[0]] = leaf.detach() + self.p["alpha"] * ascent_direction(
                leaf.grad, self.threat.norm
            )
        self._leaf = (project(xh + self._delta[:n], xh, self.threat) - xh).requires_grad_(True)
        with ctx.autocast():
            logits = model(xh + self._leaf)
        self.last_logits = None
        return F.cross_entropy(logits.float(), yh)
