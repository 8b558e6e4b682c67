"""Target-class policies for targeted attacks: ``random``, ``least-likely``, ``next``, ``class:K``, ``all``.

``all`` means one targeted run per class; the evaluation engine loops over :func:`all_targets`
and calls :func:`choose_targets` with ``class:K`` for each ``K``.
"""

from __future__ import annotations

import torch

ACCEPTED = "random, least-likely, next, class:K (0 <= K < num_classes), all"
POLICIES = ("random", "least-likely", "next", "all")


def parse_policy(policy: str, num_classes: int | None = None) -> tuple[str, int | None]:
    """``(kind, K)`` for a policy string (``K`` only for ``class:K``); invalid strings raise ValueError."""
    text = str(policy).strip().lower()
    if text in POLICIES:
        return text, None
    kind, sep, arg = text.partition(":")
    if kind == "class" and sep:
        try:
            k = int(arg)
        except ValueError:
            raise ValueError(
                f"invalid target policy {policy!r}: class:K needs an integer K; accepted: {ACCEPTED}"
            ) from None
        if k < 0 or (num_classes is not None and k >= num_classes):
            bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ValueError(f"invalid target policy {policy!r}: K must be in {bound}")
        return "class", k
    raise ValueError(f"invalid target policy {policy!r}: accepted: {ACCEPTED}")


def all_targets(num_classes: int) -> list[int]:
    """The classes the ``all`` policy loops over: ``[0, ..., num_classes - 1]``."""
    if num_classes < 2:
        raise ValueError(f"targeted attacks need at least 2 classes, got {num_classes}")
    return list(range(num_classes))


def choose_targets(
    policy: str,
    logits: torch.Tensor | None,
    y: torch.Tensor,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Target classes int64 ``[N]`` for labels ``y`` (``[N]``) under ``policy``.

    - ``random``: uniform over the classes other than ``y`` (never equals ``y``; uses ``generator``);
    - ``least-likely``: the class with the smallest logit other than ``y`` (``logits``: N x C);
    - ``next``: ``(y + 1) % num_classes``;
    - ``class:K``: ``K`` for every point (points with ``y == K`` are skipped by the attack).

    ``all`` is not a per-point choice: loop over :func:`all_targets` with ``class:K`` instead.
    """
    kind, k = parse_policy(policy, num_classes)
    if num_classes < 2:
        raise ValueError(f"targeted attacks need at least 2 classes, got {num_classes}")
    y = y.long()
    if kind == "all":
        raise ValueError(
            "target policy 'all' runs one attack per class: loop over all_targets(num_classes) with policy 'class:K'"
        )
    if kind == "next":
        return (y + 1) % num_classes
    if kind == "class":
        return torch.full_like(y, k)
    if kind == "random":
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        offset = torch.randint(1, num_classes, tuple(y.shape), generator=gen, device=gen.device)
        return (y + offset.to(y.device)) % num_classes
    # least-likely
    if logits is None or logits.dim() != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError("target policy 'least-likely' needs logits of shape N x num_classes")
    if logits.shape[1] != num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes, expected {num_classes}")
    masked = logits.detach().float().scatter(1, y[:, None].to(logits.device), float("inf"))
    return masked.argmin(dim=1).to(y.device)
