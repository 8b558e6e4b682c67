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
        grad_samples (int): gradients averaged for the step (default 1: the gradient at x). With more, the
            gradient of the loss smoothed by Gaussian noise: the mean over ``grad_samples`` copies
            ``clip(x + N(0, (grad_sigma * eps)^2), 0, 1)`` of the gradient through the clipping (the
            variance-reduced attack of Wu, Zhu, Tai & E, "Understanding and Enhancing the Transferability of
            Adversarial Examples", 2018, https://arxiv.org/abs/1802.09707).
        grad_sigma (float): the noise's standard deviation in units of eps (default 5/3, used only when
            ``grad_samples > 1``).
        grad_shift (float): with ``grad_samples > 1``, each copy is also translated by a random whole number of
            pixels in each direction, up to ``round(grad_shift * side)`` (``torch.roll``), and its gradient
            translated back: the gradient averaged over translations of the translation-invariant attack of
            Dong, Pang, Su & Zhu, "Evading Defenses to Transferable Adversarial Examples by Translation-Invariant
            Attacks", CVPR 2019 (https://arxiv.org/abs/1904.02884), sampled instead of convolved. Default 0 (no
            translation); a fraction of the image side, so 1/28 is one pixel on MNIST and CIFAR-10 and none on
            the 8x8 digits.

    Crafting on a substitute for a transfer attack (``transfer_defaults``), FGSM ascends the margin loss smoothed
    over 50 noisy copies, each translated by up to 1/28 of the image side. On MNIST (linf 0.3, a fastcnn substitute
    of a LeNet-5) the smoothing alone doubles the transfer of the plain gradient, and the translations add about 2
    points on a substitute ensemble (docs/blackbox.md). A white-box FGSM keeps the plain gradient.

    Targeted: yes (descends the loss of the target class). Deterministic: yes with ``grad_samples=1``
    (the default); otherwise seeded.

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
    defaults = {"loss": "ce", "grad_samples": 1, "grad_sigma": 5 / 3, "grad_shift": 0.0}
    transfer_defaults = {"loss": "margin", "grad_samples": 50, "grad_shift": 1 / 28}

    def __init__(self, **params):
        super().__init__(**params)
        if int(self.params["grad_samples"]) < 1:
            raise ValueError(f"fgsm needs grad_samples >= 1, got {self.params['grad_samples']}")
        if float(self.params["grad_sigma"]) < 0:
            raise ValueError(f"fgsm needs grad_sigma >= 0, got {self.params['grad_sigma']}")
        if not 0 <= float(self.params["grad_shift"]) < 0.5:
            raise ValueError(
                f"fgsm needs 0 <= grad_shift < 0.5 (a fraction of the image side), got {self.params['grad_shift']}"
            )

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
        grad = self._gradient(model, x, labels, threat, targets is not None, generator)
        return x + threat.eps * ascent_direction(grad, threat.norm)

    def _gradient(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        threat: ThreatModel,
        targeted: bool,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The loss gradient at x, or its mean over Gaussian (and translated) copies of x (``grad_samples``)."""
        loss, samples = self.params["loss"], int(self.params["grad_samples"])
        sigma = float(self.params["grad_sigma"]) * threat.eps
        if samples == 1 or sigma == 0:
            return loss_and_grad(model, x, labels, loss, targeted=targeted)[1]
        max_shift = translation_pixels(float(self.params["grad_shift"]), x.shape[-2:])
        total = torch.zeros_like(x)
        for _ in range(samples):
            dy, dx = random_translation(max_shift, generator)
            noisy = torch.roll(x, (dy, dx), (-2, -1))
            noisy += sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            inside = (noisy > 0) & (noisy < 1)  # the clipping's derivative: zero where a pixel was clipped
            grad = loss_and_grad(model, noisy.clamp(0.0, 1.0), labels, loss, targeted=targeted)[1] * inside
            total += torch.roll(grad, (-dy, -dx), (-2, -1))
        return total / samples


def random_translation(max_shift: int, generator: torch.Generator) -> tuple[int, int]:
    """A uniform whole-pixel translation ``(dy, dx)`` in ``[-max_shift, max_shift]^2``; ``(0, 0)`` without a draw
    when ``max_shift`` is 0 (so the noise that follows is the one drawn without translations)."""
    if not max_shift:
        return 0, 0
    draw = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator, device=generator.device)
    return int(draw[0]), int(draw[1])


def translation_pixels(fraction: float, size: tuple[int, int] | torch.Size) -> int:
    """The largest translation, in whole pixels, of ``fraction`` of the image's shorter side (rounded)."""
    return int(round(fraction * min(int(size[0]), int(size[1]))))
