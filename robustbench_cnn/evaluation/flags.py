"""Validity flags: signs that an evaluation may over-state robustness, each with an explanation.

In the spirit of AutoAttack's ``checks.py``, combined in one place: zero input gradients, outputs that look
like probabilities, randomized models or models left in train mode, robust accuracy at eps=0 different from
clean accuracy, curves that rise with epsilon, accuracy above chance at a very large epsilon, and weaker
attacks (single-step, black-box) that break points the iterative white-box attacks could not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.types import Norm


@dataclass(frozen=True)
class Flag:
    """One warning about an evaluation: a short code for tables and a sentence for people."""

    code: str
    message: str
    eps: float | None = None  # None: concerns the model or the whole evaluation

    def __str__(self) -> str:
        where = f" (eps={self.eps:g})" if self.eps is not None else ""
        return f"[{self.code}]{where} {self.message}"


EXPLANATIONS = {
    "train-mode": "the model was in train mode when evaluated: batch norm and dropout make predictions depend on "
    "the batch; evaluations run in eval mode, but check how the model is meant to be used",
    "randomized": "two forward passes on the same input differ: the defense is randomized, so gradient attacks "
    "need expectation over transformation (EOT) and robust accuracy may be over-stated",
    "attacks-skipped": "the model has too few classes for some attacks of the cascade (targeted APGD needs 4), so "
    "they were left out: the cascade is weaker than it is on a 10-class model",
    "eot": "the model is randomized, so the gradient attacks averaged several gradient samples per step "
    "(expectation over transformation, Athalye et al. 2018; AutoAttack's rand version uses 20)",
    "probabilities": "outputs look like probabilities (non-negative, rows sum to 1), not logits: a softmax "
    "inside the model flattens cross-entropy gradients and weakens gradient attacks",
    "zero-gradients": "some inputs have an all-zero loss gradient: gradient-based attacks cannot move them, "
    "which is a sign of gradient masking",
    "eps0-mismatch": "robust accuracy at eps=0 differs from clean accuracy: the model or the pipeline is not "
    "deterministic",
    "non-monotone": "robust accuracy rises with epsilon: a larger ball contains the smaller one, so a stronger "
    "attack should have found these points",
    "above-chance": "accuracy is above chance at a very large epsilon, where any image can be turned into any "
    "other: the attacks are failing, not the model resisting",
    "single-step-beats-iterative": "a single-step attack broke points that the iterative attacks could not: "
    "a classic sign of gradient masking",
    "black-box-beats-white-box": "a black-box attack broke points that every white-box attack missed "
    "(AutoAttack's Square check): gradients are likely masked or obfuscated",
}


def flag(code: str, detail: str = "", eps: float | None = None) -> Flag:
    text = EXPLANATIONS[code] + (f" ({detail})" if detail else "")
    return Flag(code, text, eps)


class NonFiniteOutputError(ValueError):
    """The model's clean outputs hold NaN or infinite values: no attack can be judged against them (an argmax
    over NaN is arbitrary, and two passes that both give NaN would look "randomized")."""


def check_finite_outputs(logits: torch.Tensor) -> None:
    """Refuse a model whose clean-pass ``logits`` (N x K) hold NaN or infinite values, before any attack runs:
    ``NonFiniteOutputError`` naming how many outputs, in how many of the N images, are NaN (and infinite)."""
    nan = torch.isnan(logits)
    inf = torch.isinf(logits)
    bad = nan | inf
    if not bool(bad.any()):
        return
    rows = int(bad.flatten(1).any(1).sum()) if logits.ndim > 1 else int(bad.sum())
    parts = [f"{int(nan.sum())} NaN"] + ([f"{int(inf.sum())} infinite"] if bool(inf.any()) else [])
    raise NonFiniteOutputError(
        f"the model returned {' and '.join(parts)} of {logits.numel()} outputs ({rows} of {len(logits)} images) "
        "on the clean pass: refusing to evaluate it (check its weights and forward pass)"
    )


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float()


def model_flags(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, was_training: bool, max_points: int = 256
) -> list[Flag]:
    """Checks on the model itself, run once per evaluation on up to ``max_points`` inputs (eval mode)."""
    flags: list[Flag] = []
    if was_training:
        flags.append(flag("train-mode"))
    xs, ys = x[:max_points], y[:max_points]
    if not len(xs):
        return flags
    with torch.no_grad():
        first, second = _outputs(model, xs), _outputs(model, xs)
    if not torch.allclose(first, second, rtol=1e-5, atol=1e-6):
        flags.append(flag("randomized", f"max difference {float((first - second).abs().max()):.3g}"))
    if bool((first >= 0).all()) and torch.allclose(first.sum(1), first.new_ones(len(first)), atol=1e-4):
        flags.append(flag("probabilities"))
    xg = xs.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg).float(), ys, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > 0:
        flags.append(flag("zero-gradients", f"{zero:.1%} of {len(xs)} checked inputs"))
    return flags


def large_eps(norm: Norm, eps: float, input_numel: int) -> bool:
    """Whether ``eps`` is large enough to turn any image into a uniform grey one (0.5 everywhere)."""
    if norm is Norm.LINF:
        return eps >= 0.5
    if norm is Norm.L2:
        return eps >= 0.5 * math.sqrt(input_numel)
    if norm is Norm.L1:
        return eps >= 0.5 * input_numel
    return eps >= input_numel


def max_distance(norm: Norm, input_numel: int) -> float:
    """The largest ``norm`` distance between two images of ``input_numel`` values in [0, 1] (all zeros to all
    ones): 1 for linf, ``sqrt(D)`` for l2, ``D`` for l1 and l0. A ball of this radius holds every image."""
    if norm is Norm.LINF:
        return 1.0
    if norm is Norm.L2:
        return math.sqrt(input_numel)
    return float(input_numel)


def eps_warnings(norm: Norm, eps_list: list[float], input_shape: tuple[int, ...]) -> list[str]:
    """One sentence per epsilon of ``eps_list`` that makes the evaluation meaningless for images of
    ``input_shape`` (C x H x W): at or above :func:`max_distance` every image is in the ball (every point is
    trivially broken); else at or above :func:`large_eps` any image can be turned into uniform grey (robust
    accuracy above chance there means the attacks failed: the ``above-chance`` flag)."""
    numel = math.prod(input_shape)
    shape = "x".join(map(str, input_shape))
    limit = max_distance(norm, numel)
    formula = {Norm.LINF: "1", Norm.L2: f"sqrt({numel})"}.get(norm, str(numel))
    out = []
    for eps in eps_list:
        if eps >= limit:
            out.append(
                f"eps {eps:g} is at least the largest {norm.value} distance between two {shape} images in [0, 1] "
                f"({formula} = {limit:.4g}): every point is trivially broken"
            )
        elif eps > 0 and large_eps(norm, eps, numel):
            out.append(
                f"eps {eps:g} can turn any {shape} image into uniform grey ({norm.value} distance "
                f"{0.5 * limit:.4g}): robust accuracy above chance there means the attacks failed"
            )
    return out


def curve_flags(
    norm: Norm, eps_list: list[float], robust_acc: list[float], clean_acc: float, num_classes: int, input_numel: int
) -> list[Flag]:
    """Checks on one robustness curve (robust accuracy per sorted epsilon)."""
    flags: list[Flag] = []
    for eps, acc in zip(eps_list, robust_acc):
        if eps == 0 and acc != clean_acc:
            flags.append(flag("eps0-mismatch", f"{acc:.4f} vs clean {clean_acc:.4f}", eps))
        if large_eps(norm, eps, input_numel) and acc > 1.0 / max(num_classes, 1) + 0.1:
            flags.append(flag("above-chance", f"robust accuracy {acc:.1%} with {num_classes} classes", eps))
    for (e0, a0), (e1, a1) in zip(zip(eps_list, robust_acc), zip(eps_list[1:], robust_acc[1:])):
        if a1 > a0 + 1e-12:
            flags.append(flag("non-monotone", f"{a0:.4f} at eps={e0:g} but {a1:.4f} at eps={e1:g}", e1))
    return flags
