"""Transfer-oriented iterative FGSM variants: momentum (MI), input diversity (DI) and both."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.attacks.base import Attack
from robustbench_cnn.attacks.functional import get_loss
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.geometry import ascent_direction, project, rand_uniform, randint
from robustbench_cnn.core.types import Norm, ThreatModel


def input_diversity(x: torch.Tensor, prob: float, resize_rate: float, generator: torch.Generator) -> torch.Tensor:
    """With probability ``prob``, shrink the batch to a random size and zero-pad it back at random.

    Xie et al. enlarge then pad (299 -> [299, 330)); to keep the model's input shape fixed (small
    CNNs have fixed-size heads) we shrink to a side in ``[round(resize_rate * H), H]`` instead and
    pad back to ``H x W``. One draw per batch, as in the paper; nearest-neighbour resizing.
    """
    if prob <= 0 or float(rand_uniform((1,), generator, x)) >= prob:
        return x
    h, w = x.shape[-2:]
    low = max(1, min(h, int(round(resize_rate * h))))
    new_h = int(randint(low, h + 1, (1,), generator, x.device))
    new_w = max(1, int(round(w * new_h / h)))
    resized = F.interpolate(x, size=(new_h, new_w), mode="nearest")
    top = int(randint(0, h - new_h + 1, (1,), generator, x.device))
    left = int(randint(0, w - new_w + 1, (1,), generator, x.device))
    return F.pad(resized, (left, w - new_w - left, top, h - new_h - top), value=0.0)


class _IterativeFGSM(Attack):
    """Shared loop of MI-FGSM / DI-FGSM / DI-MI-FGSM (see the registered subclasses)."""

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = True
    kind = "white-box"
    black_box = False
    single_step = False
    eot_param = None
    fast_gradient_kernels = True

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        p = self.params
        steps = int(p["steps"])
        alpha = float(p["alpha"]) if p["alpha"] is not None else threat.eps / max(steps, 1)
        loss_fn = get_loss(p["loss"])
        labels = targets if targets is not None else y
        sign = -1.0 if targets is not None else 1.0
        xa, g = x.clone(), torch.zeros_like(x)
        for _ in range(steps):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                x_in = input_diversity(xa, float(p["diversity_prob"]), float(p["resize_rate"]), generator)
                value = sign * loss_fn(model(x_in), labels).sum()
                (grad,) = torch.autograd.grad(value, [xa])
            l1 = grad.flatten(1).abs().mean(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            g = float(p["decay"]) * g + grad / l1
            xa = project(xa.detach() + alpha * ascent_direction(g, threat.norm), x, threat)
        return xa.detach()


_DOC_COMMON = """
    Distance: linf (signed steps), l2 (normalised steps); projected onto the ball after each step.

    Arguments:
        steps (int): iterations (default 10).
        alpha (float | None): step size; None = eps / steps (default).
        decay (float): momentum factor mu (default {decay}).
        diversity_prob (float): probability of the random resize-and-pad per step (default {prob}).
        resize_rate (float): smallest side after resizing, relative to the input (default 0.9).
        loss (str): ``ce`` (default), ``margin`` or ``dlr``.

    Targeted: yes (descends the target's loss). Deterministic: {det}. No early stopping: the final
    iterate is returned, as a transfer attack crafted on a surrogate should be.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> attack = get_attack("{name}", steps=10)
        >>> adv = attack(surrogate, x, y, ThreatModel.parse("linf:8/255")).x_adv
        >>> (target_model(adv).argmax(1) != y).float().mean()   # transfer success
"""


@ATTACKS.register("mi-fgsm")
class MIFGSM(_IterativeFGSM):
    __doc__ = """Momentum Iterative FGSM.

    Paper: Dong, Liao, Pang, Su, Zhu, Hu & Li, "Boosting Adversarial Attacks with Momentum",
    CVPR 2018 (https://arxiv.org/abs/1710.06081).
    """ + _DOC_COMMON.format(decay=1.0, prob=0.0, det="yes", name="mi-fgsm")

    deterministic = True
    optional_numbers = frozenset({"alpha"})
    defaults = {"steps": 10, "alpha": None, "decay": 1.0, "diversity_prob": 0.0, "resize_rate": 0.9, "loss": "ce"}


@ATTACKS.register("di-fgsm")
class DIFGSM(_IterativeFGSM):
    __doc__ = """Diverse-Inputs Iterative FGSM (DI2-FGSM).

    Paper: Xie, Zhang, Zhou, Bai, Wang, Ren & Yuille, "Improving Transferability of Adversarial
    Examples with Input Diversity", CVPR 2019 (https://arxiv.org/abs/1803.06978).
    """ + _DOC_COMMON.format(decay=0.0, prob=0.5, det="no (random transformations)", name="di-fgsm")

    deterministic = False
    optional_numbers = frozenset({"alpha"})
    defaults = {"steps": 10, "alpha": None, "decay": 0.0, "diversity_prob": 0.5, "resize_rate": 0.9, "loss": "ce"}


@ATTACKS.register("di-mi-fgsm")
class DIMIFGSM(_IterativeFGSM):
    __doc__ = """Momentum Iterative FGSM with Diverse Inputs (M-DI2-FGSM).

    Papers: Dong et al., CVPR 2018 (momentum) and Xie et al., CVPR 2019 (input diversity);
    https://arxiv.org/abs/1803.06978.
    """ + _DOC_COMMON.format(decay=1.0, prob=0.5, det="no (random transformations)", name="di-mi-fgsm")

    deterministic = False
    optional_numbers = frozenset({"alpha"})
    defaults = {"steps": 10, "alpha": None, "decay": 1.0, "diversity_prob": 0.5, "resize_rate": 0.9, "loss": "ce"}
