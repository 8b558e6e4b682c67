"""New points for the substitute's training set: the transformations of one augmentation round.

Papernot et al. (2017) grow the substitute set by Jacobian-based augmentation only:
``x + lambda * sign(J_F(x)[O(x)])``. The points it makes stay close to the seed images, so a substitute
trained on them learns little of the target away from them. Here each new point is made from a parent of the
current set by one of these transformations (every new point is then labelled by the oracle and counted):

- ``jacobian``: Papernot's step, ``clip(x + lambda * sign(d F(x)[label] / d x), 0, 1)``;
- ``shift-jacobian``: the parent translated by up to ``max_shift`` pixels in each direction (zero fill), then a
  Jacobian step at the translated point (a CNN target still answers translated digits with meaning);
- ``fgsm``: the substitute's FGSM point, ``clip(x + probe_eps * sign(d CE(F(x), label) / d x), 0, 1)``: the
  oracle's label there says whether the target follows the substitute's adversarial direction;
- ``shift-fgsm``: a translated parent, then the FGSM step;
- ``noise``: the parent plus uniform noise in ``[-lambda, lambda]`` per pixel, clipped to [0, 1]
  (a gradient-free neighbour).

:func:`augment_points` assigns the kinds to the new points in turn (the same shares of each) and returns them
with the index of their parent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AUGMENTATIONS", "augment_points", "fgsm_augment", "jacobian_augment", "parent_indices", "random_shift"]

#: The transformations :func:`augment_points` knows.
AUGMENTATIONS = ("jacobian", "shift-jacobian", "fgsm", "shift-fgsm", "noise")


def jacobian_augment(
    substitute: nn.Module, x: torch.Tensor, labels: torch.Tensor, lam: float, batch_size: int = 512
) -> torch.Tensor:
    """``clip(x + lam * sign(d F(x)[labels] / d x), 0, 1)``: Papernot et al.'s new points (on x's device).

    ``F(x)[labels]`` is the substitute's logit of the oracle label. The substitute runs in eval mode
    (restored afterwards); its parameters receive no gradient.
    """
    device = next(substitute.parameters()).device
    was_training = substitute.training
    substitute.eval()
    out = []
    try:
        for xb, lb in zip(x.split(batch_size), labels.split(batch_size)):
            xb = xb.to(device).detach().requires_grad_(True)
            with torch.enable_grad():
                logit = substitute(xb).gather(1, lb.to(device)[:, None]).sum()
                (grad,) = torch.autograd.grad(logit, [xb])
            out.append((xb.detach() + lam * grad.sign()).clamp(0.0, 1.0).to(x.device))
    finally:
        substitute.train(was_training)
    return torch.cat(out) if out else x.clone()


def fgsm_augment(
    substitute: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, batch_size: int = 512
) -> torch.Tensor:
    """``clip(x + eps * sign(d CE(F(x), labels) / d x), 0, 1)``: the substitute's FGSM point (on x's device)."""
    device = next(substitute.parameters()).device
    was_training = substitute.training
    substitute.eval()
    out = []
    try:
        for xb, lb in zip(x.split(batch_size), labels.split(batch_size)):
            xb = xb.to(device).detach().requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(substitute(xb), lb.to(device), reduction="sum")
                (grad,) = torch.autograd.grad(loss, [xb])
            out.append((xb.detach() + eps * grad.sign()).clamp(0.0, 1.0).to(x.device))
    finally:
        substitute.train(was_training)
    return torch.cat(out) if out else x.clone()


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by an integer offset in ``[-max_shift, max_shift]`` per axis (zero fill)."""
    if max_shift <= 0 or not len(x):
        return x.clone()
    n, _, h, w = x.shape
    p = int(max_shift)
    padded = F.pad(x, (p, p, p, p))
    dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).tolist()
    dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def parent_indices(n_pool: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` parents among ``n_pool`` points: whole random permutations, repeated while ``k > n_pool``, so
    every point has as many children as any other, give or take one."""
    reps = -(-k // n_pool) if n_pool else 0
    if reps == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.cat([torch.randperm(n_pool, generator=generator) for _ in range(reps)])[:k]


def augment_points(
    substitute: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    lam: float,
    generator: torch.Generator,
    *,
    kinds: Sequence[str] = ("jacobian",),
    max_shift: int = 3,
    probe_eps: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` new points from parents in ``x`` (labels: the oracle's, int64), and their parents' indices.

    Parents are drawn by :func:`parent_indices`; the ``i``-th new point is made by ``kinds[i % len(kinds)]``
    (see the module docstring) with the Jacobian step ``lam``, the FGSM step ``probe_eps`` (linf) and translations
    of at most ``max_shift`` pixels.
    """
    unknown = sorted(set(kinds) - set(AUGMENTATIONS))
    if not kinds or unknown:
        raise ValueError(f"invalid augmentation(s) {unknown or list(kinds)}: use some of {', '.join(AUGMENTATIONS)}")
    parents = parent_indices(len(x), k, generator)
    out = x[parents].clone()
    which = torch.arange(len(parents)) % len(kinds)
    for j, kind in enumerate(kinds):
        sel = (which == j).nonzero().flatten()
        if not sel.numel():
            continue
        xp, lp = x[parents[sel]], labels[parents[sel]]
        if kind == "jacobian":
            out[sel] = jacobian_augment(substitute, xp, lp, lam)
        elif kind == "shift-jacobian":
            out[sel] = jacobian_augment(substitute, random_shift(xp, max_shift, generator), lp, lam)
        elif kind in ("fgsm", "shift-fgsm"):
            start = random_shift(xp, max_shift, generator) if kind == "shift-fgsm" else xp
            out[sel] = fgsm_augment(substitute, start, lp, probe_eps)
        else:  # noise
            noise = (torch.rand(xp.shape, generator=generator) * 2 - 1).to(xp.device, xp.dtype) * abs(lam)
            out[sel] = (xp + noise).clamp(0.0, 1.0)
    return out, parents
