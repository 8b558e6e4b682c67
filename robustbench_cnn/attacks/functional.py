"""Stateless helpers shared by the attacks: losses and their gradients, success tests, seeded RNG.

The threat-model geometry (projection, step directions, random starts) is :mod:`robustbench_cnn.core.geometry`,
shared with the defenses; the model utilities (eval mode, batched logits) are :mod:`robustbench_cnn.core.model_utils`.
Every function works on a batch ``N x C x H x W`` in [0, 1], on whatever device the batch lives, and never
modifies its inputs in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from robustbench_cnn.core.geometry import TINY


# ----------------------------------------------------------------------------------------- losses
def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (N,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin ``max_{j != y} z_j - z_y`` (N,): > 0 iff misclassified."""
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - z_y


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample Difference-of-Logits-Ratio loss (Croce & Hein, 2020), shift and scale invariant.

    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``; needs at least 3 classes.
    """
    if logits.shape[1] < 3:
        raise ValueError("the DLR loss needs at least 3 classes")
    z_sorted = logits.sort(dim=1).values
    return margin_loss(logits, labels) / (z_sorted[:, -1] - z_sorted[:, -3] + TINY)


LOSSES = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}


def get_loss(name: str):
    """A per-sample loss by name (``ce``, ``margin``, ``dlr``); higher means closer to misclassified."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"invalid loss {name!r}: use one of {', '.join(LOSSES)}") from None


def loss_and_grad(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward: ``(logits, d objective / d x)``.

    The objective is ``loss(logits, labels)`` summed over the batch (ascended), or its negative
    when ``targeted`` (``labels`` are then the targets, and the attack descends the loss).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        value = get_loss(loss)(logits, labels).sum()
        if targeted:
            value = -value
        (grad,) = torch.autograd.grad(value, [x])
    return logits.detach(), grad.detach()


def eot_loss_and_grad(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`loss_and_grad` averaged over ``samples`` passes (expectation over transformation, Athalye et al.
    2018): for randomized models, the mean gradient estimates the gradient of the expected loss. Returns the
    mean logits and the mean gradient; ``samples == 1`` is exactly :func:`loss_and_grad`."""
    logits, grad = loss_and_grad(model, x, labels, loss, targeted)
    for _ in range(int(samples) - 1):
        more_logits, more_grad = loss_and_grad(model, x, labels, loss, targeted)
        logits, grad = logits + more_logits, grad + more_grad
    return (logits / samples, grad / samples) if samples > 1 else (logits, grad)


def is_adversarial(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-sample success from logits: ``argmax != y`` (untargeted) or ``argmax == target``."""
    pred = logits.argmax(dim=1)
    return pred == labels if targeted else pred != labels


# ------------------------------------------------------------------------------- RNG and model state
def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (a CPU one where unsupported)."""
    try:
        gen = torch.Generator(device=device)
    except (RuntimeError, TypeError):
        gen = torch.Generator()
    return gen.manual_seed(int(seed))


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run library code that draws from torch's *global* RNG with ``seed``, then restore that RNG.

    Used around foolbox and AutoAttack, which seed or draw from the global generator.
    """
    devices: list[int] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # torch.manual_seed reseeds every CUDA device, also when the attack itself runs on the CPU
        devices = list(range(torch.cuda.device_count()))
    kwargs = {"device_type": device.type} if device.type not in ("cpu", "cuda") else {}
    with torch.random.fork_rng(devices=devices, **kwargs):
        torch.manual_seed(int(seed))
        yield
