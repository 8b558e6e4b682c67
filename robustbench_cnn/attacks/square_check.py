"""Square Attack as a masking check whose budget grows only where the gradient attacks look masked."""

from __future__ import annotations

import functools
from typing import Any

import torch

from robustbench_cnn.attacks.adapters_autoattack import Square
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.types import Norm


class _ShortBudgetSpent(Exception):
    """Raised inside a Square run to abandon it after its short budget."""


@functools.cache
def abandoning_square() -> type:
    """pyautoattack's ``SquareAttack`` whose run stops after ``short_queries`` iterations unless ``grow_if`` points
    broke by then; otherwise it runs on to its ``n_queries``, exactly AutoAttack's run.

    The run is not changed: the class follows the library's own per-point state (best margin, best loss, best point,
    queries) through its ``margin_and_loss`` calls up to the short budget, with the library's update rule, so it can return that state when it
    abandons the run (checked against the library's return in ``tests/test_fast_cascade.py``). Without the
    rescaled schedule (AutoAttack's default) the square sizes depend on the iteration only, so an abandoned run is
    the run a budget of ``short_queries`` would have made, number for number.
    """
    from pyautoattack.square import SquareAttack

    class AbandoningSquare(SquareAttack):
        short_queries: int = 0
        grow_if: int = 1

        def attack_single_run(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.calls = 0
            try:
                return super().attack_single_run(x, y)
            except _ShortBudgetSpent:
                return self.queries, self.best

        def margin_and_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            margin, loss = super().margin_and_loss(x, y)
            if self.calls > self.short_queries:  # past the short budget the run is not abandoned: nothing to follow
                return margin, loss
            if self.calls == 0:  # the initialisation: every point of the run
                self.margin_min, self.loss_min, self.best = margin.clone(), loss.clone(), x.clone()
                self.queries = torch.ones(x.shape[0], device=x.device)
            else:  # an iteration: the points the library still attacks, in index order
                idx = (self.margin_min > 0.0).nonzero().flatten()
                better = loss < self.loss_min[idx]
                self.loss_min[idx] = torch.where(better, loss, self.loss_min[idx])
                better = better | (margin <= 0.0)
                self.margin_min[idx] = torch.where(better, margin, self.margin_min[idx])
                self.best[idx[better]] = x[better]
                self.queries[idx] += 1.0
            self.calls += 1
            if self.calls == self.short_queries + 1 and int((self.margin_min <= 0.0).sum()) < self.grow_if:
                raise _ShortBudgetSpent
            return margin, loss

    return AbandoningSquare


@ATTACKS.register("square-check")
class SquareCheck(Square):
    """Square Attack with a short budget that grows to AutoAttack's 5000 queries where it breaks points.

    Paper: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
    attack via random search", ECCV 2020 (https://arxiv.org/abs/1912.00049); AutoAttack's Square check (Croce &
    Hein, ICML 2020).

    Run last in a cascade, on the points every white-box attack missed: AutoAttack's Square run (``n_queries_full``
    queries), abandoned on a mini-batch after ``n_queries`` queries if it has broken fewer than ``grow_if`` of its
    points by then. Breaking points the gradient attacks missed means the gradients there are unreliable (masked),
    so the run goes on to AutoAttack's budget; where it breaks nothing, the check stops at the short budget. The run
    itself is AutoAttack's (``abandoning_square``): a grown run spends what AutoAttack's Square would, not more.

    Distance: linf, l2.

    Arguments:
        n_queries (int): the short budget (default 2500: on an MNIST PGD-AT net 1000 queries left points that
            AutoAttack's 5000-query Square breaks; docs/fast_cascade.md).
        n_queries_full (int): the grown budget (default 5000, AutoAttack's); at least ``n_queries``.
        grow_if (int): points the run must break in a mini-batch within the short budget to go on (default 1).
        p_init (float): initial fraction of pixels changed (default 0.8). loss (str): ``margin`` (default) or
            ``ce``. n_restarts, resc_schedule: as ``square``.

    Along a robustness curve a cascade runs it from the largest epsilon down (``curve_order``): a point it leaves
    unbroken at an epsilon is robust at the smaller ones without another run.

    Targeted: no. Deterministic: no (seeded). Queries: per sample, in ``result.queries``.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("square-check", n_queries=500)(model, x, y, ThreatModel.parse("linf:0.3")).robust_accuracy
    """

    norms = (Norm.LINF, Norm.L2)
    kind = "score"
    black_box = True
    curve_order = "descending"
    defaults = {**Square.defaults, "n_queries": 2500, "n_queries_full": 5000, "grow_if": 1}

    def __init__(self, **params):
        super().__init__(**params)
        if not 1 <= int(self.params["n_queries"]) <= int(self.params["n_queries_full"]):
            raise ValueError("square-check needs 1 <= n_queries <= n_queries_full")
        if int(self.params["grow_if"]) < 1:
            raise ValueError("square-check needs grow_if >= 1")

    def make(self, model: Any, threat: Any, seed: int, device: Any, num_classes: int) -> Any:
        p = self.params
        square = self.square_run(abandoning_square(), model, threat, seed, device, int(p["n_queries_full"]))
        square.short_queries, square.grow_if = int(p["n_queries"]), int(p["grow_if"])
        return square
