"""Square Attack as a masking check whose budget grows only where the gradient attacks look masked."""

from __future__ import annotations

from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.attacks.square import Square
from robustbench_cnn.core.types import Norm


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
    itself is AutoAttack's (:func:`~robustbench_cnn.attacks.square_search.square_search`): a grown run spends what
    AutoAttack's Square would, not more.

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

    def budget(self) -> tuple[int, int | None, int]:
        p = self.params
        return int(p["n_queries_full"]), int(p["n_queries"]), int(p["grow_if"])
