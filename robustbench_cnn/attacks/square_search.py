"""Square Attack's random search in our own loop: AutoAttack's run, number for number, with less work per query.

Paper: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020 (https://arxiv.org/abs/1912.00049), as AutoAttack runs it (pyautoattack's
``SquareAttack.attack_single_run``: linf and l2, untargeted, ``margin`` or ``ce`` loss).

:func:`square_search` makes the library's search: the same draws from torch's global RNG in the same order (through
the library's own helpers: ``p_selection``, ``random_int``, ``random_choice``, ``eta``, ``normalize``, ``lp_norm``),
the same model calls on the same points, the same updates. On the same points and seed it returns the library's
adversarial examples and query counts exactly (``tests/test_square_search.py``). What it saves is bookkeeping per
query, which on small models costs as much as the forward pass itself:

- the state of the points still attacked is kept compacted and rewritten only when a point leaves, instead of being
  gathered from and scattered back into the whole run at every query;
- an linf step rewrites only its square (elsewhere the candidate is the current best point, which already lies in the
  ball and in [0, 1]);
- the cross-entropy is computed only when it is the loss.

It can also give up early (``abandon_after``, ``grow_if``): AutoAttack's run stopped after that many iterations
unless it has broken ``grow_if`` points by then, i.e. exactly what a run of that budget returns (the square sizes
depend on the iteration only, without the rescaled schedule).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from robustbench_cnn.core.types import Norm

_LIBRARY_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


@dataclass
class SquareRun:
    """What a run returns: per point, the queries it spent (the initial one included, as the library counts) and
    the best point it found (adversarial where its margin is <= 0)."""

    queries: torch.Tensor
    x_best: torch.Tensor


@functools.cache
def _library_class() -> type:
    from pyautoattack.square import SquareAttack

    return SquareAttack


def library_helpers(
    norm: Norm, eps: float, n_queries: int, p_init: float, rescale_schedule: bool, device: torch.device
) -> Any:
    """pyautoattack's ``SquareAttack`` configured as AutoAttack runs it, for its helper methods (schedule, draws,
    the l2 window shape and norms)."""
    helpers = _library_class()(
        None,
        norm=_LIBRARY_NORM[norm],
        n_queries=n_queries,
        eps=eps,
        p_init=p_init,
        n_restarts=1,
        verbose=False,
        loss="margin",
        resc_schedule=rescale_schedule,
        device=device,
    )
    helpers.ndims = 3
    return helpers


class _Points:
    """The per-point state of a run (best margin, best loss, best point, queries) for all its points, and a
    compacted copy of it for the points still attacked (margin > 0), in index order as the library keeps them."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_best: torch.Tensor,
        margin: torch.Tensor,
        loss: torch.Tensor,
        linf_eps: float | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.x_best, self.margin, self.loss = x_best, margin, loss
        self.queries = torch.ones(x.shape[0], device=x.device)
        self.linf_eps = linf_eps
        self.idx = (margin > 0.0).nonzero().flatten()
        self._take_active()

    def _take_active(self) -> None:
        i = self.idx
        self.a_x, self.a_y, self.a_best = self.x[i], self.y[i], self.x_best[i]
        self.a_margin, self.a_loss, self.a_queries = self.margin[i], self.loss[i], self.queries[i]
        if self.linf_eps is not None:  # the ball's bounds, as the library computes them at every query
            self.a_low, self.a_high = self.a_x - self.linf_eps, self.a_x + self.linf_eps

    @property
    def n_active(self) -> int:
        return int(self.idx.numel())

    def put_back(self) -> None:
        """Write the compacted state into the whole run's."""
        i = self.idx
        self.x_best[i], self.margin[i], self.loss[i], self.queries[i] = (
            self.a_best,
            self.a_margin,
            self.a_loss,
            self.a_queries,
        )

    def update(
        self, x_new: torch.Tensor, margin: torch.Tensor, loss: torch.Tensor, region: tuple[slice, ...] | None = None
    ) -> None:
        """The library's update: a lower loss, or a misclassification, makes the candidate the best point."""
        improved = loss < self.a_loss
        self.a_loss = torch.where(improved, loss, self.a_loss)
        improved |= margin <= 0.0
        self.a_margin = torch.where(improved, margin, self.a_margin)
        keep = improved.view(-1, *([1] * (x_new.dim() - 1)))
        if region is None:
            self.a_best = torch.where(keep, x_new, self.a_best)
        else:  # the candidate differs from the best point only in ``region``
            self.a_best[region] = torch.where(keep, x_new[region], self.a_best[region])
        self.a_queries += 1.0
        broken = margin <= 0.0
        if bool(broken.any()):
            self.put_back()
            self.idx = self.idx[~broken]
            self._take_active()


def _margin_and_loss(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The library's untargeted margin (true logit minus the largest other) and loss (the margin, or minus the
    cross-entropy)."""
    logits = predict(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).max(dim=1).values
    margin = true - others
    if loss == "margin":
        return margin, margin
    return margin, -1.0 * F.cross_entropy(logits, y, reduction="none")


def square_search(
    predict: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    norm: Norm,
    eps: float,
    n_queries: int,
    *,
    p_init: float = 0.8,
    loss: str = "margin",
    rescale_schedule: bool = False,
    abandon_after: int | None = None,
    grow_if: int = 1,
) -> SquareRun:
    """One run of AutoAttack's Square search on ``x`` (``N x C x H x W`` in [0, 1]) with labels ``y``.

    ``predict`` maps images to logits. ``norm`` linf or l2, ball radius ``eps``; ``n_queries`` iterations after the
    initial query (AutoAttack: 5000); ``p_init`` the initial fraction of pixels changed (0.8); ``loss`` ``margin``
    (AutoAttack's) or ``ce``; ``rescale_schedule`` stretches the square-size schedule to ``n_queries`` (AutoAttack:
    False). With ``abandon_after`` the run stops after that many iterations unless it has broken at least
    ``grow_if`` points by then. Draws from torch's global RNG (seed it around the call, as AutoAttack does).
    """
    if loss not in ("margin", "ce"):
        raise ValueError(f"Square's loss must be margin or ce, got {loss!r}")
    helpers = library_helpers(norm, eps, n_queries, p_init, rescale_schedule, x.device)
    with torch.no_grad():
        if norm is Norm.LINF:
            return _linf_search(predict, x, y, eps, n_queries, loss, helpers, abandon_after, grow_if)
        if norm is Norm.L2:
            return _l2_search(predict, x, y, eps, n_queries, loss, helpers, abandon_after, grow_if)
    raise ValueError(f"Square searches linf and l2 balls, not {norm.value}")


def _finish(points: _Points) -> SquareRun:
    points.put_back()
    return SquareRun(points.queries, points.x_best)


def _stops(points: _Points, iteration: int, abandon_after: int | None, grow_if: int) -> bool:
    """After ``iteration`` (from 0): every point broken (the library stops), or the short budget spent without
    ``grow_if`` broken points."""
    if points.n_active == 0:
        return True
    broken = points.x.shape[0] - points.n_active
    return abandon_after is not None and iteration + 1 == abandon_after and broken < grow_if


def _linf_search(predict, x, y, eps, n_queries, loss, helpers, abandon_after, grow_if) -> SquareRun:
    n, c, h, w = x.shape
    n_features = c * h * w
    x_best = torch.clamp(x + eps * helpers.random_choice([n, c, 1, w]), 0.0, 1.0)
    margin, loss_now = _margin_and_loss(predict, x_best, y, loss)
    points = _Points(x, y, x_best, margin, loss_now, linf_eps=eps)
    if bool((margin < 0.0).all()):
        return _finish(points)
    for iteration in range(n_queries):
        p = helpers.p_selection(iteration)
        s = min(max(int(round(math.sqrt(p * n_features / c))), 1), min(h, w))
        vh = int(helpers.random_int(0, h - s))
        vw = int(helpers.random_int(0, w - s))
        step = 2.0 * eps * helpers.random_choice([c, 1, 1])
        region = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        x_new = points.a_best.clone()
        moved = torch.min(torch.max(points.a_best[region] + step, points.a_low[region]), points.a_high[region])
        x_new[region] = torch.clamp(moved, 0.0, 1.0)
        margin, loss_now = _margin_and_loss(predict, x_new, points.a_y, loss)
        points.update(x_new, margin, loss_now, region)
        if _stops(points, iteration, abandon_after, grow_if):
            break
    return _finish(points)


def _l2_start(x: torch.Tensor, eps: float, helpers) -> torch.Tensor:
    """The library's l2 start: a grid of ``h // 5``-sized windows, each with the library's window shape and a random
    sign per image and channel, scaled to the sphere of radius ``eps``."""
    n, c, h, w = x.shape
    s = h // 5
    offset = (h - s * 5) // 2
    delta = torch.zeros_like(x)
    for row in range(h // s):
        for col in range(w // s):
            vh, vw = offset + row * s, offset + col * s
            delta[:, :, vh : vh + s, vw : vw + s] += helpers.eta(s).view(1, 1, s, s) * helpers.random_choice(
                [n, c, 1, 1]
            )
    return torch.clamp(x + helpers.normalize(delta) * eps, 0.0, 1.0)


def _window_norm(t: torch.Tensor) -> torch.Tensor:
    return (t**2).sum(dim=(-2, -1), keepdim=True).sqrt()


def _l2_candidate(points: _Points, eps: float, iteration: int, n_features: int, helpers) -> torch.Tensor:
    """The library's l2 proposal: move the perturbation's mass of a random window (and of a second one, set to zero)
    into a new window shape with random signs, keeping the norm at ``eps``."""
    xa = points.a_x
    n, c, h, w = xa.shape
    delta = points.a_best - xa
    p = helpers.p_selection(iteration)
    s = max(int(round(math.sqrt(p * n_features / c))), 3)
    s = min(s + 1 if s % 2 == 0 else s, min(h, w))
    vh, vw = helpers.random_int(0, h - s), helpers.random_int(0, w - s)
    first = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
    mask = torch.zeros_like(xa)
    mask[first] = 1.0
    norm_first = _window_norm(delta[first])
    vh2, vw2 = helpers.random_int(0, h - s), helpers.random_int(0, w - s)
    second = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
    mask_second = torch.zeros_like(xa)
    mask_second[second] = 1.0
    norm_image = helpers.lp_norm(points.a_best - xa)
    norm_windows = _window_norm(delta * torch.max(mask, mask_second))
    window = torch.ones([n, c, s, s], device=xa.device)
    window *= helpers.eta(s).view(1, 1, s, s) * helpers.random_choice([n, c, 1, 1])
    window += delta[first] / (1e-12 + norm_first)
    room = torch.max((eps * torch.ones_like(window)) ** 2 - norm_image**2, torch.zeros_like(window)) / c
    window = window / (1e-12 + _window_norm(window)) * (room + norm_windows**2).sqrt()
    delta[second] = 0.0
    delta[first] = window + 0
    return torch.clamp(xa + helpers.normalize(delta) * eps, 0.0, 1.0)


def _l2_search(predict, x, y, eps, n_queries, loss, helpers, abandon_after, grow_if) -> SquareRun:
    n_features = x[0].numel()
    x_best = _l2_start(x, eps, helpers)
    margin, loss_now = _margin_and_loss(predict, x_best, y, loss)
    points = _Points(x, y, x_best, margin, loss_now)
    if bool((margin < 0.0).all()):
        return _finish(points)
    for iteration in range(n_queries):
        x_new = _l2_candidate(points, eps, iteration, n_features, helpers)
        margin, loss_now = _margin_and_loss(predict, x_new, points.a_y, loss)
        points.update(x_new, margin, loss_now)
        if _stops(points, iteration, abandon_after, grow_if):
            break
    return _finish(points)
