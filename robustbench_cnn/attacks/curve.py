"""The epsilon engines: attacks run along a list of epsilons on a fixed set of points.

:class:`GrowingBall` is the one loop behind :meth:`Attack.robustness_curve
<robustbench_cnn.attacks.base.Attack.robustness_curve>` with ``order="ascending"``, the cascades of
:func:`robustbench_cnn.evaluation.engine.evaluate` and :func:`robustbench_cnn.attacks.blackbox.transfer.transfer_attack`.
At each epsilon it runs its attacks in order, each on the points still unbroken, and

- carries broken points forward (``carry_forward``): a point broken at a smaller epsilon is broken at every larger
  one (its adversarial example lies in the larger ball), so it is never attacked again and the robust accuracy is
  non-increasing along the curve;
- warm-starts (``warm_start``) the attacks that accept a starting point (``Attack.supports_start``, e.g. PGD): each
  point starts at that attack's last iterate from the previous epsilon plus a uniform random step the size of the
  epsilon increment (:func:`jittered_start`), which continues the ascent instead of repeating it.

:func:`shrinking_ball` is the cheap curve of one warm-startable attack (``Attack.robustness_curve`` runs on it for
attacks with ``supports_start``): it attacks every point at the *largest* epsilon first, then walks down, attacking at
each smaller epsilon only the points broken at the one above, warm-started at their adversarial example projected
into the smaller ball (usually still adversarial, which one forward pass checks). A point the attack fails to break
at an epsilon (after a warm-started run and one fresh run, ``fresh_retry``) leaves the walk and counts as robust there
and at every smaller epsilon: the larger ball contains the smaller ones, the same reading of the curve's monotonicity as
``carry_forward``'s, from the other side. So a point robust along the whole curve is attacked once instead of once
per epsilon; ``docs/curves.md`` measures cost and robust accuracy against foolbox's multi-epsilon call and the
growing ball.

:func:`shrinking_checks` walks the same way for the trailing *checks* of a cascade (attacks declaring
``curve_order = "descending"``, e.g. the Square check): after the growing ball has run the gradient attacks at every
epsilon, the checks run from the largest epsilon down on the points those attacks left robust, skipping the points
the checks left unbroken at the epsilon above. A check's cost is then about one run per point instead of one per
epsilon at which the point is robust (``docs/fast_cascade.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from robustbench_cnn.core.geometry import project, random_start
from robustbench_cnn.core.model_utils import batched_logits, eval_mode
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel

__all__ = ["BallStep", "CurveAttack", "GrowingBall", "jittered_start", "shrinking_ball", "shrinking_checks"]


class CurveAttack(Protocol):
    """What the ball needs of an attack; every :class:`~robustbench_cnn.attacks.base.Attack` is one (this module
    cannot import ``base``: ``Attack.robustness_curve`` runs on the ball)."""

    supports_start: bool

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        targets: torch.Tensor | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        clean_logits: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
    ) -> AttackResult: ...


def jittered_start(previous: torch.Tensor, norm: Norm, radius: float, seed: int) -> torch.Tensor:
    """A warm start along a growing ball: each point's last iterate at the previous epsilon plus a uniform random
    step in the ball of the epsilon increment ``radius`` (the attack then projects it onto the new ball), so the
    run continues the ascent without restarting from exactly the same point. Seeded by ``seed`` (a generator on
    ``previous``'s device); ``radius <= 0`` returns ``previous`` itself."""
    if radius <= 0:
        return previous
    generator = torch.Generator(device=previous.device).manual_seed(seed)
    return random_start(previous, ThreatModel(norm, radius), generator)


@dataclass
class BallStep:
    """One attack at one epsilon: the points it ran on and its result on them.

    ``idx`` (int64 [m], CPU) are positions among the ball's N points; ``result`` is the attack's
    :class:`AttackResult` on ``x[idx]`` (its rows follow ``idx``), or None when no point was left to attack.
    """

    attack: CurveAttack
    threat: ThreatModel
    idx: torch.Tensor
    result: AttackResult | None

    @property
    def broken(self) -> torch.Tensor:
        """Positions (among the N points) this step broke."""
        if self.result is None:
            return self.idx[:0]
        return self.idx[self.result.success.cpu()]


class GrowingBall:
    """A cascade of attacks run along ascending epsilons on fixed points ``x`` (N x C x H x W, in [0, 1]).

    Arguments:
        attacks: the cascade, in order; at each epsilon each attack runs on the points no earlier attack broke.
        model: the network attacked (the attacks put it in eval mode themselves).
        x, y: the points and their int64 labels (the labels the attacks use).
        attackable: bool [N], the points the attacks may run on (e.g. clean-correct ones, or those whose
            target differs from their label); the others are never attacked.
        clean_logits: the model's logits on ``x`` (N x K) handed to each attack so it skips its clean forward
            pass; None: each attack computes its own.
        targets: int64 [N] target classes for a targeted cascade, or None.
        seed: the seed of every attack call and of the warm starts' jitter.
        batch_size: the attacks' mini-batch size (None: all points at once).
        warm_start: start the attacks that support it at their last iterate (default True).
        carry_forward: points broken at an epsilon stay broken at larger ones and are not attacked again
            (default True). False attacks every attackable point afresh at each epsilon.

    Call :meth:`run` once per epsilon, in ascending order, and consume it fully. Masks and the warm-start memory
    live on the CPU; the attacks run on ``x``'s device.
    """

    def __init__(
        self,
        attacks: Sequence[CurveAttack],
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        attackable: torch.Tensor,
        clean_logits: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        warm_start: bool = True,
        carry_forward: bool = True,
    ) -> None:
        self.attacks = list(attacks)
        self.model, self.x, self.y = model, x, y
        self.attackable = attackable.detach().cpu().bool().clone()
        self.clean_logits, self.targets = clean_logits, targets
        self.seed, self.batch_size = seed, batch_size
        self.warm_start, self.carry_forward = warm_start, carry_forward
        #: bool [N]: no attack has broken the point at any epsilon so far (with ``carry_forward``)
        self.unbroken = torch.ones(x.shape[0], dtype=torch.bool)
        self.prev_eps: float | None = None
        self._x_cpu: torch.Tensor | None = None
        # per attack: its last iterate for every point (the clean input where it has not run), or None before its
        # first run; kept only for warm-started attacks
        self._last: list[torch.Tensor | None] = [None] * len(self.attacks)

    def _sub(self, t: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
        return None if t is None else t[idx.to(t.device)]

    def run(
        self, threat: ThreatModel, before: Callable[[CurveAttack, ThreatModel], Any] | None = None
    ) -> Iterator[BallStep]:
        """Run the cascade at ``threat`` (its epsilon at least the previous one's), yielding one :class:`BallStep`
        per attack as soon as it has run; ``before(attack, threat)`` is called before each attack starts (progress)."""
        eps = float(threat.eps)
        for k, attack in enumerate(self.attacks):
            if before is not None:
                before(attack, threat)
            idx = (self.unbroken & self.attackable).nonzero().flatten()
            result = None
            if idx.numel():
                warm = None
                if self.warm_start and attack.supports_start and self._last[k] is not None:
                    radius = eps - (self.prev_eps or 0.0)
                    warm = jittered_start(self._last[k][idx].to(self.x.device), threat.norm, radius, self.seed)
                at = idx.to(self.x.device)
                result = attack(
                    self.model,
                    self.x[at],
                    self.y[idx.to(self.y.device)],
                    threat,
                    targets=self._sub(self.targets, idx),
                    seed=self.seed,
                    batch_size=self.batch_size,
                    clean_logits=self._sub(self.clean_logits, idx),
                    start=warm,
                )
                if self.warm_start and attack.supports_start:
                    if self._last[k] is None:
                        if self._x_cpu is None:
                            self._x_cpu = self.x.detach().cpu()
                        self._last[k] = self._x_cpu.clone()
                    self._last[k][idx] = result.x_adv.cpu()  # type: ignore[index]
                if self.carry_forward:
                    self.unbroken[idx[result.success.cpu()]] = False
            yield BallStep(attack, threat, idx, result)
        self.prev_eps = eps


def shrinking_ball(
    attack: CurveAttack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threats: Sequence[ThreatModel],
    *,
    attackable: torch.Tensor,
    clean_logits: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    fresh_retry: bool = True,
) -> list[list[BallStep]]:
    """One attack along ``threats`` (ascending epsilons, one norm) walked from the largest epsilon down.

    At the largest epsilon the attack runs on every ``attackable`` point. At each smaller epsilon only the points
    broken at the epsilon above are left: their adversarial example there, projected into the smaller ball, is
    checked with one forward pass (it usually stays adversarial); the attack then runs on the others, started
    (``start=``, when ``attack.supports_start``) at that projected example. With ``fresh_retry`` (default True) the
    points a run leaves unbroken, at every epsilon, get one more run from the attack's own starting point (e.g.
    PGD's random start; seed ``seed + 1``), as a second, independent attack at that epsilon. The points still
    unbroken leave the walk: robust at that epsilon and, without further attacks, at every smaller one. So the
    broken points shrink along the walk and the robust accuracy is non-increasing in epsilon by construction.

    Arguments are those of :class:`GrowingBall` (``x`` N x C x H x W in [0, 1]; ``attackable`` bool [N]).

    Returns, per threat in the order given, the :class:`BallStep` run at it, in order: the forward check (below the
    largest epsilon; an :class:`AttackResult` with ``queries`` 1), the attack's run, the fresh retry; a step is
    left out where no point was left for it. A point is broken at ``threats[k]`` iff a step at ``k`` broke it, and
    then it is broken at every larger epsilon.
    """
    eps = [float(t.eps) for t in threats]
    if any(b < a for a, b in zip(eps, eps[1:])):
        raise ValueError(f"shrinking_ball needs ascending epsilons, got {eps}")
    idx = attackable.detach().cpu().bool().nonzero().flatten()
    adv: torch.Tensor | None = None  # adversarial examples of idx's points at the epsilon above
    steps: list[list[BallStep]] = [[] for _ in threats]

    def sub(t: torch.Tensor | None, at: torch.Tensor) -> torch.Tensor | None:
        return None if t is None else t[at.to(t.device)]

    def run(threat: ThreatModel, at: torch.Tensor, warm: torch.Tensor | None, run_seed: int) -> BallStep:
        result = attack(
            model,
            x[at.to(x.device)],
            y[at.to(y.device)],
            threat,
            targets=sub(targets, at),
            seed=run_seed,
            batch_size=batch_size,
            clean_logits=sub(clean_logits, at),
            start=warm if attack.supports_start else None,
        )
        return BallStep(attack, threat, at, result)

    for k in reversed(range(len(threats))):
        if idx.numel() == 0:
            break
        threat = threats[k]
        broken = torch.zeros(idx.numel(), dtype=torch.bool)
        x_adv = x[idx.to(x.device)].clone()
        if adv is not None:  # the examples from the epsilon above, projected into this ball: still adversarial?
            check = _check(model, x, y, threat, idx, project(adv, x[idx.to(x.device)], threat), targets, batch_size)
            steps[k].append(BallStep(attack, threat, idx, check))
            broken, x_adv = check.success.cpu().clone(), check.x_adv
        for retry in (False, True):
            rows = (~broken).nonzero().flatten()
            if rows.numel() == 0 or (retry and not fresh_retry):
                break
            warm = x_adv[rows.to(x_adv.device)] if adv is not None and not retry else None
            step = run(threat, idx[rows], warm, seed + int(retry))
            steps[k].append(step)
            ok = step.result.success.cpu()  # type: ignore[union-attr]
            x_adv[rows[ok].to(x_adv.device)] = step.result.x_adv[ok.to(x_adv.device)]  # type: ignore[union-attr]
            broken[rows[ok]] = True
        idx, adv = idx[broken], x_adv[broken.to(x_adv.device)]
    return steps


def shrinking_checks(
    checks: Sequence[CurveAttack],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threats: Sequence[ThreatModel],
    candidates: Sequence[torch.Tensor],
    *,
    clean_logits: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    before: Callable[[CurveAttack, ThreatModel], Any] | None = None,
) -> list[list[BallStep]]:
    """The trailing checks of a cascade along ``threats`` (ascending epsilons > 0, one norm), from the largest down.

    ``candidates[k]`` (bool [N]) are the points the earlier attacks of the cascade left robust at ``threats[k]``; on a
    growing ball they shrink as epsilon grows (``candidates[k + 1]`` is inside ``candidates[k]``). At each epsilon,
    from the largest, the checks run in order, each on the candidates no earlier check broke there, except the points
    that every check left unbroken at the epsilon above: those are robust there and, without another run, at every
    smaller epsilon (the larger ball contains the smaller one; the reading of :func:`shrinking_ball`). A point a check
    breaks at an epsilon was broken at every larger one (by the earlier attacks, or by a check there), so the curve
    stays non-increasing. Untargeted (checks take no targets); ``x`` N x C x H x W in [0, 1].

    Returns, per threat in the order given, one :class:`BallStep` per check (``result`` None where no point was left).
    """
    eps = [float(t.eps) for t in threats]
    if any(b < a for a, b in zip(eps, eps[1:])) or any(e <= 0 for e in eps):
        raise ValueError(f"shrinking_checks needs ascending positive epsilons, got {eps}")
    survived = torch.zeros(x.shape[0], dtype=torch.bool)  # left unbroken by every check at the epsilon above
    steps: list[list[BallStep]] = [[] for _ in threats]
    for k in reversed(range(len(threats))):
        threat = threats[k]
        candidate = candidates[k].detach().cpu().bool()
        todo = candidate & ~survived
        for check in checks:
            if before is not None:
                before(check, threat)
            idx = todo.nonzero().flatten()
            result = None
            if idx.numel():
                result = check(
                    model,
                    x[idx.to(x.device)],
                    y[idx.to(y.device)],
                    threat,
                    seed=seed,
                    batch_size=batch_size,
                    clean_logits=None if clean_logits is None else clean_logits[idx.to(clean_logits.device)],
                )
                todo[idx[result.success.cpu()]] = False
            steps[k].append(BallStep(check, threat, idx, result))
        survived = todo | (survived & candidate)
    return steps


def _check(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    idx: torch.Tensor,
    candidate: torch.Tensor,
    targets: torch.Tensor | None,
    batch_size: int | None,
) -> AttackResult:
    """Whether ``candidate`` (inside the ball around ``x[idx]``) is adversarial, by one forward pass, as a result."""
    xs, ys = x[idx.to(x.device)], y[idx.to(y.device)].to(x.device)
    tg = targets[idx.to(targets.device)].to(x.device) if targets is not None else None
    with eval_mode(model), torch.no_grad():
        logits = batched_logits(model, candidate, batch_size or max(candidate.shape[0], 1))
    assert logits is not None
    pred = logits.argmax(dim=1).to(x.device)
    success = pred == tg if tg is not None else pred != ys
    return AttackResult(
        x_adv=candidate,
        success=success,
        clean_correct=torch.ones_like(success),
        perturbation_norm=threat.norm.measure(candidate - xs),
        pred_adv=pred,
        target=tg.clone() if tg is not None else torch.full_like(ys, -1),
        queries=torch.ones(idx.numel(), dtype=torch.int64, device=x.device),
        threat=threat,
        attack="projected-example-check",
    )
