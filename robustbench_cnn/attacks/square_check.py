"""Square Attack as a masking check whose budget grows only where the gradient attacks look masked."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_cnn.attacks.adapters_autoattack import Square
from robustbench_cnn.attacks.base import PerturbOutput
from robustbench_cnn.attacks.functional import make_generator
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.types import Norm, ThreatModel


@ATTACKS.register("square-check")
class SquareCheck(Square):
    """Square Attack with a short budget that grows to AutoAttack's 5000 queries where it breaks points.

    Paper: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
    attack via random search", ECCV 2020 (https://arxiv.org/abs/1912.00049); AutoAttack's Square check (Croce &
    Hein, ICML 2020).

    Run last in a cascade, on the points every white-box attack missed: a short run (``n_queries``) that breaks
    at least ``grow_if`` points of a mini-batch means the gradients there are unreliable (masked), so the points of
    that batch still robust get a fresh run of ``n_queries_full`` queries (another seed), as AutoAttack would
    spend; where the short run breaks nothing, the check stops there.

    Distance: linf, l2.

    Arguments:
        n_queries (int): the short run's budget (default 2500: on an MNIST PGD-AT net 1000 queries left points
            that AutoAttack's 5000-query Square breaks; docs/fast_cascade.md).
        n_queries_full (int): the grown run's budget (default 5000, AutoAttack's).
        grow_if (int): points the short run must break in a mini-batch to grow the budget there (default 1).
        p_init (float): initial fraction of pixels changed (default 0.8). loss (str): ``margin`` (default) or
            ``ce``. n_restarts, resc_schedule: as ``square``.

    Along a robustness curve a cascade runs it from the largest epsilon down (``curve_order``): a point it leaves
    unbroken at an epsilon is robust at the smaller ones without another run.

    Targeted: no. Deterministic: no (seeded). Queries: both runs, per sample, in ``result.queries``.

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
        if int(self.params["n_queries"]) < 1 or int(self.params["n_queries_full"]) < 1:
            raise ValueError("square-check needs n_queries and n_queries_full >= 1")
        if int(self.params["grow_if"]) < 1:
            raise ValueError("square-check needs grow_if >= 1")

    def _square(self, n_queries: int) -> Square:
        keep = {k: v for k, v in self.params.items() if k in Square.defaults}
        return Square(**{**keep, "n_queries": n_queries})

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        p = self.params
        adv, queries = self._square(int(p["n_queries"])).perturb(model, x, y, threat, None, generator)
        with torch.no_grad():
            robust = model(adv).argmax(dim=1) == y
        if int((~robust).sum()) < int(p["grow_if"]) or not robust.any():
            return adv, queries
        idx = robust.nonzero().flatten()
        again = make_generator(generator.initial_seed() + 1, x.device)
        more, more_q = self._square(int(p["n_queries_full"])).perturb(model, x[idx], y[idx], threat, None, again)
        adv[idx], queries[idx] = more, queries[idx] + more_q
        return adv, queries
