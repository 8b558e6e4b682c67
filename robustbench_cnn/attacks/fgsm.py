"""FGSM / fast gradient method: one signed (linf) or normalised (l2) gradient step."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack
from robustbench_cnn.attacks.functional import loss_and_grad
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.geometry import ascent_direction
from robustbench_cnn.core.types import Norm, ThreatModel


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast Gradient Sign Method.

    Paper: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015
    (https://arxiv.org/abs/1412.6572); l2 is the "fast gradient method" of Kurakin et al. (2017).

    Distance: linf (``x + eps * sign(grad)``), l2 (``x + eps * grad / ||grad||_2``).

    Arguments:
        loss (str): loss ascended (descended toward the target when targeted): ``ce`` (default),
            ``margin`` or ``dlr``.

    Targeted: yes (descends the loss of the target class). Deterministic: yes.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> attack = get_attack("fgsm")
        >>> result = attack(model, x, y, ThreatModel.parse("linf:8/255"))
        >>> result.robust_accuracy
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = True
    deterministic = True
    kind = "white-box"
    black_box = False
    single_step = True
    eot_param = None
    fast_gradient_kernels = True
    defaults = {"loss": "ce"}

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        labels = targets if targets is not None else y
        _, grad = loss_and_grad(model, x, labels, self.params["loss"], targeted=targets is not None)
        return x + threat.eps * ascent_direction(grad, threat.norm)
