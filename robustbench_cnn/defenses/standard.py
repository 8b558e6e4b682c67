"""Standard training (no defense): the baseline row of every trade-off table."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.defenses.base import Defense
from robustbench_cnn.defenses.registry import DEFENSES
from robustbench_cnn.training import StepContext


@DEFENSES.register("standard")
class Standard(Defense):
    """Standard training: cross-entropy on clean inputs (the undefended baseline).

    Paper: none (empirical risk minimisation).
    Norm: any supported (linf, l2); the threat is only recorded and used by the per-epoch PGD monitor.
    Arguments: none.
    Cost: one forward + backward per batch.

    Example::

        >>> recipe = get_defense("standard", threat="linf:0.1")
    """

    defaults: dict[str, Any] = {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        with ctx.autocast():
            logits = model(x)
        self.last_logits = logits.detach()
        return F.cross_entropy(logits.float(), y)
