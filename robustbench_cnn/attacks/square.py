"""Square Attack, AutoAttack's score-based attack, on our own loop (:mod:`attacks.square_search`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack, PerturbOutput
from robustbench_cnn.attacks.functional import seeded_global_rng
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.attacks.square_search import square_search
from robustbench_cnn.core.types import Norm, ThreatModel


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack as AutoAttack runs it, score-based: uses logits only.

    Paper: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020 (https://arxiv.org/abs/1912.00049).

    The search is pyautoattack's ``SquareAttack`` run, number for number (same seed, same points: the same
    adversarial examples and query counts, checked in ``tests/test_square_search.py``), in our own loop, which
    spends less time per query (:mod:`attacks.square_search`). The call's ``seed`` seeds torch's global RNG
    around the run, as AutoAttack does.

    Distance: linf, l2.

    Arguments (AutoAttack defaults):
        n_queries (int): query budget per restart (default 5000).
        p_init (float): initial fraction of pixels changed (default 0.8).
        n_restarts (int): restarts on the points still robust (default 1).
        loss (str): ``margin`` (default) or ``ce``.
        resc_schedule (bool): rescale the p schedule to n_queries (default False, as in AutoAttack).

    Targeted: no. Deterministic: no (seeded). Queries: per sample, in ``result.queries``.

    Shapes: x ``N x C x H x W`` in [0, 1] (square images work best); y ``[N]`` int64.

    Example::

        >>> res = get_attack("square", n_queries=1000)(model, x, y, ThreatModel.parse("linf:0.1"))
        >>> res.queries.float().mean()
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = False
    deterministic = False
    kind = "score"
    black_box = True
    single_step = False
    eot_param = None
    defaults = {"n_queries": 5000, "p_init": 0.8, "n_restarts": 1, "loss": "margin", "resc_schedule": False}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if p["loss"] not in ("margin", "ce"):
            raise ValueError(f"invalid loss {p['loss']!r} for attack {self.name!r}: use margin or ce")
        if int(p["n_queries"]) < 1 or int(p["n_restarts"]) < 1:
            raise ValueError(f"{self.name} needs n_queries and n_restarts >= 1")
        if not 0 < float(p["p_init"]) <= 1:
            raise ValueError(f"{self.name} needs 0 < p_init <= 1")

    def budget(self) -> tuple[int, int | None, int]:
        """(queries of a run, the iteration after which it is abandoned or None, points it must break by then)."""
        return int(self.params["n_queries"]), None, 1

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        # AutoAttack's restart loop (SquareAttack.perturb), keeping the per-sample query counts it drops
        p = self.params
        n_queries, abandon_after, grow_if = self.budget()
        adv = x.clone()
        queries = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)  # perturb gets clean-correct points only
        with seeded_global_rng(generator.initial_seed(), x.device), torch.no_grad():
            for _ in range(int(p["n_restarts"])):
                idx = robust.nonzero().flatten()
                if idx.numel() == 0:
                    break
                run = square_search(
                    model,
                    x[idx],
                    y[idx],
                    threat.norm,
                    float(threat.eps),
                    n_queries,
                    p_init=float(p["p_init"]),
                    loss=p["loss"],
                    rescale_schedule=bool(p["resc_schedule"]),
                    abandon_after=abandon_after,
                    grow_if=grow_if,
                )
                queries[idx] += run.queries.round().to(torch.int64).to(x.device)
                broken = model(run.x_best).argmax(dim=1) != y[idx]
                robust[idx[broken]] = False
                adv[idx[broken]] = run.x_best[broken]
        return adv, queries
