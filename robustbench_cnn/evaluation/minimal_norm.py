"""Robustness curves from minimal-norm attacks, and their comparison with the growing-ball worst case.

A minimal-norm attack (``fmn``, ``fab``, ``ddn``: ``minimal_norm = True``) run once with a bound ``B`` gives each
point's smallest adversarial perturbation norm found. A point is robust at ``eps <= B`` when it is clean-correct
and was not broken, or its minimal norm is larger than ``eps``; so the whole curve up to ``B`` comes from one run
(:class:`MinimalNorms`), monotone non-increasing by construction.

:func:`compare_minimal_norm` puts the minimal-norm curve beside the growing-ball worst case of
:func:`robustbench_cnn.evaluation.engine.evaluate` (a cascade or one attack, one attack run per epsilon) on the
same points, with the per-sample worst case of the two as the reported figure and the seconds each took. Per
minimal-norm attack it also reports how close its norms come to the best norm any of them found on each point
(the per-sample optimality of AttackBench, Cina et al. 2024, https://arxiv.org/abs/2404.19460, summarised as a
mean ratio).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks import ATTACKS, Attack, get_attack
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel
from robustbench_cnn.evaluation.engine import Evaluation, evaluate, model_device

__all__ = [
    "MinimalNormComparison",
    "MinimalNorms",
    "compare_minimal_norm",
    "is_minimal_norm",
    "minimal_norm_attacks",
    "run_label",
]

#: relative slack when checking that the requested epsilons lie within the bound (float round-off of ``eps``)
_BOUND_RTOL = 1e-9


def is_minimal_norm(attack: type[Attack] | Attack) -> bool:
    """Whether an attack (class or instance) declares ``minimal_norm = True``."""
    return bool(getattr(attack, "minimal_norm", False))


def minimal_norm_attacks(norm: Norm | str | None = None) -> list[str]:
    """Registered minimal-norm attacks, by name (those supporting ``norm`` when given)."""
    chosen = norm if isinstance(norm, Norm) or norm is None else Norm.parse(str(norm))
    return [
        name
        for name, cls in ATTACKS.items()
        if is_minimal_norm(cls) and (chosen is None or chosen in cls.norms)  # type: ignore[attr-defined]
    ]


@dataclass(frozen=True)
class MinimalNorms:
    """Per-sample minimal adversarial norms, and the robust accuracy they imply at any ``eps <= bound``.

    ``norms[i]`` is 0 for a point the model misclassifies, the smallest adversarial norm found for a broken
    point, and ``+inf`` for a point not broken within ``bound``. The point is robust at ``eps`` iff
    ``norms[i] > eps`` (the ball is closed: a perturbation of norm exactly ``eps`` is in it).
    """

    norm: Norm
    bound: float
    norms: torch.Tensor
    attack: str
    elapsed_s: float = 0.0
    #: process CPU seconds of the run (unlike ``elapsed_s``, not inflated by other jobs sharing the machine)
    cpu_s: float = 0.0

    @classmethod
    def from_result(cls, result: AttackResult) -> MinimalNorms:
        """From one run of a minimal-norm attack (``result.threat.eps`` is the bound)."""
        broken = result.success.cpu()
        # The attack's projection puts every success in the closed ball up to float round-off (a norm of
        # 0.30000001 at eps 0.3); such a point is broken at the bound, as the run itself counted it.
        found = result.perturbation_norm.detach().float().cpu().clamp(max=float(result.threat.eps))
        norms = torch.where(broken, found, torch.full_like(found, math.inf))
        norms = torch.where(result.clean_correct.cpu(), norms, torch.zeros_like(found))
        return cls(result.threat.norm, float(result.threat.eps), norms, result.attack, float(result.elapsed_s))

    @classmethod
    def best(cls, runs: Sequence[MinimalNorms]) -> MinimalNorms:
        """The per-sample smallest norm over several runs on the same points (same norm); the bound is the
        smallest of theirs, the name joins theirs with ``+`` and the seconds add up."""
        if not runs:
            raise ValueError("no minimal-norm runs to combine")
        if len({r.norm for r in runs}) != 1 or len({r.norms.shape for r in runs}) != 1:
            raise ValueError("minimal-norm runs to combine must share the norm and the points")
        norms = torch.stack([r.norms for r in runs]).amin(dim=0)
        bound = min(r.bound for r in runs)
        return cls(
            runs[0].norm,
            bound,
            norms,
            "+".join(r.attack for r in runs),
            sum(r.elapsed_s for r in runs),
            sum(r.cpu_s for r in runs),
        )

    @property
    def n(self) -> int:
        return int(self.norms.numel())

    @property
    def clean_correct(self) -> torch.Tensor:
        return self.norms > 0

    @property
    def broken(self) -> torch.Tensor:
        """Clean-correct points the attack broke within the bound."""
        return self.clean_correct & torch.isfinite(self.norms)

    def _check(self, eps: float) -> float:
        eps = float(eps)
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"invalid epsilon {eps!r}: must be a finite number >= 0")
        if eps > self.bound * (1 + _BOUND_RTOL):
            raise ValueError(
                f"eps {eps:g} is above the bound {self.bound:g} the attack ran with: robustness there is unknown "
                f"(run the minimal-norm attack with a threat of eps >= {eps:g})"
            )
        return eps

    def robust(self, eps: float) -> torch.Tensor:
        """Per-sample robustness at ``eps``: clean-correct and not broken by a perturbation of norm <= eps."""
        return self.norms > self._check(eps)

    def robust_accuracy(self, eps: float) -> float:
        return float(self.robust(eps).float().mean()) if self.n else float("nan")

    def curve(self, eps_list: Iterable[float]) -> list[tuple[float, float]]:
        """``(eps, robust accuracy)`` at each epsilon, ascending; non-increasing by construction."""
        return [(eps, self.robust_accuracy(eps)) for eps in sorted({float(e) for e in eps_list})]


def run_label(attack: Attack) -> str:
    """An attack's name, with the parameters that differ from its defaults: ``fmn(l2_projection=True)``."""
    changed = {k: v for k, v in attack.params.items() if attack.defaults.get(k) != v}
    return attack.name + (f"({', '.join(f'{k}={v}' for k, v in sorted(changed.items()))})" if changed else "")


def _resolve_minimal(attacks: Sequence[str | Attack | tuple[str, dict[str, Any]]] | None, norm: Norm) -> list[Attack]:
    if attacks is None:
        names = minimal_norm_attacks(norm)
        if not names:
            raise ValueError(f"no registered minimal-norm attack supports norm {norm.value}")
        return [get_attack(name) for name in names]
    built: list[Attack] = []
    for item in attacks:
        if isinstance(item, Attack):
            attack = item
        elif isinstance(item, tuple):
            attack = get_attack(item[0], **item[1])
        else:
            attack = get_attack(str(item))
        if not is_minimal_norm(attack):
            accepted = ", ".join(minimal_norm_attacks()) or "none"
            raise ValueError(f"attack {attack.name!r} is not a minimal-norm attack: use one of {accepted}")
        if norm not in attack.norms:
            supported = ", ".join(n.value for n in attack.norms)
            raise ValueError(f"attack {attack.name!r} does not support norm {norm.value}: supported: {supported}")
        built.append(attack)
    if not built:
        raise ValueError("no minimal-norm attacks given")
    return built


@dataclass
class MinimalNormComparison:
    """Minimal-norm curve vs growing-ball worst case on the same points (see :func:`compare_minimal_norm`)."""

    norm: Norm
    eps_list: list[float]
    runs: list[MinimalNorms]  # one per minimal-norm attack, in the order run
    best: MinimalNorms  # per-sample best over ``runs``
    growing_ball: Evaluation
    growing_ball_s: float
    seed: int = 0
    growing_ball_cpu_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.best.n

    def growing_ball_robust(self, eps: float) -> torch.Tensor:
        for outcome in self.growing_ball.outcomes:
            if outcome.eps == eps:
                return outcome.robust.cpu()
        raise ValueError(f"eps {eps:g} was not evaluated by the growing ball")

    def worst_case_robust(self, eps: float) -> torch.Tensor:
        """Per-sample worst case: robust to the minimal-norm attacks *and* to the growing-ball cascade."""
        return self.best.robust(eps) & self.growing_ball_robust(eps)

    def rows(self) -> list[dict[str, Any]]:
        """One record per epsilon: clean accuracy, the minimal-norm robust accuracy (best over the attacks, and
        each attack's own), the growing-ball robust accuracy, the reported per-sample worst case of the two,
        and the wall-clock and CPU seconds of each method (the minimal-norm attacks run once for the whole curve)."""
        out = []
        clean = float(self.best.clean_correct.float().mean())
        for eps in self.eps_list:
            row: dict[str, Any] = {
                "norm": self.norm.value,
                "eps": eps,
                "n": self.n,
                "clean_accuracy": clean,
                "minimal_norm_robust": self.best.robust_accuracy(eps),
                "growing_ball_robust": float(self.growing_ball_robust(eps).float().mean()),
                "reported_robust": float(self.worst_case_robust(eps).float().mean()),
                "minimal_norm_attacks": self.best.attack,
                "growing_ball_attacks": self.growing_ball.cascade,
                "minimal_norm_s": self.best.elapsed_s,
                "growing_ball_s": self.growing_ball_s,
                "minimal_norm_cpu_s": self.best.cpu_s,
                "growing_ball_cpu_s": self.growing_ball_cpu_s,
            }
            for run in self.runs:
                row[f"robust_{run.attack}"] = run.robust_accuracy(eps)
            out.append(row)
        return out

    def attack_rows(self) -> list[dict[str, Any]]:
        """One record per minimal-norm attack: seconds, points broken within the bound, the share of the points
        any of them broke that this one broke (``found_share``), and on the points it broke the mean and median
        of ``its norm / best norm of any attack`` (1.0: always the best; AttackBench's per-sample optimality)."""
        best = self.best.norms
        any_broken = self.best.broken
        out = []
        for run in self.runs:
            mine = run.broken
            ratio = run.norms[mine] / best[mine]
            out.append(
                {
                    "attack": run.attack,
                    "norm": self.norm.value,
                    "bound": run.bound,
                    "seconds": run.elapsed_s,
                    "cpu_seconds": run.cpu_s,
                    "broken": int(mine.sum()),
                    "found_share": float(mine.sum()) / float(any_broken.sum()) if any_broken.any() else float("nan"),
                    "mean_norm": float(run.norms[mine].mean()) if mine.any() else float("nan"),
                    "mean_ratio_to_best": float(ratio.mean()) if mine.any() else float("nan"),
                    "median_ratio_to_best": float(ratio.median()) if mine.any() else float("nan"),
                }
            )
        return out


def compare_minimal_norm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: Norm | str,
    eps_list: Iterable[float],
    *,
    minimal_attacks: Sequence[str | Attack | tuple[str, dict[str, Any]]] | None = None,
    growing_ball: str | Sequence[Any] = "pgd",
    seed: int = 0,
    batch_size: int | None = 256,
    device: str | torch.device | None = None,
) -> MinimalNormComparison:
    """The minimal-norm curve and the growing-ball worst case of ``model`` on the same points ``(x, y)``.

    Args:
        model: an ``nn.Module`` taking images in [0, 1] and returning logits.
        x, y: images N x C x H x W in [0, 1] and int64 labels.
        norm: the threat model's norm (``linf``, ``l2``, ...).
        eps_list: the epsilons of the table; the minimal-norm attacks run once with the largest as the bound.
        minimal_attacks: minimal-norm attacks (names, ``(name, params)`` pairs or instances); default: every
            registered one that supports ``norm`` (``fmn``, ``fab``, ``ddn``).
        growing_ball: what :func:`~robustbench_cnn.evaluation.engine.evaluate` runs per epsilon: a suite name
            (``quick``, ``standard``, ``plus``), attack names, or a list (default ``"pgd"``, 40 steps).
        seed: seeds every attack.
        batch_size: attack mini-batch size.
        device: where to attack (default: the model's device).

    Returns a :class:`MinimalNormComparison`: ``rows()`` per epsilon, ``attack_rows()`` per minimal-norm attack.
    """
    norm = norm if isinstance(norm, Norm) else Norm.parse(str(norm))
    eps_sorted = sorted({float(e) for e in eps_list})
    if not eps_sorted:
        raise ValueError("no epsilons given")
    bound = ThreatModel(norm, eps_sorted[-1])  # validates the largest, the others below
    for eps in eps_sorted:
        ThreatModel(norm, eps)
    attacks = _resolve_minimal(minimal_attacks, norm)
    labels = [run_label(attack) for attack in attacks]
    if len(set(labels)) != len(labels):
        raise ValueError(f"minimal-norm attacks given twice with the same parameters: {', '.join(labels)}")
    dev = torch.device(device) if device is not None else model_device(model, x)
    x, y = x.to(dev), y.to(dev)
    runs = []
    for attack, label in zip(attacks, labels):
        t0, c0 = time.perf_counter(), time.process_time()
        result = attack(model, x, y, bound, seed=seed, batch_size=batch_size)
        run = MinimalNorms.from_result(result)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs.append(MinimalNorms(run.norm, run.bound, run.norms, label, wall, cpu))
    t0, c0 = time.perf_counter(), time.process_time()
    evaluation = evaluate(model, x, y, norm, eps_sorted, growing_ball, seed=seed, batch_size=batch_size, device=dev)
    growing_s, growing_cpu = time.perf_counter() - t0, time.process_time() - c0
    best = MinimalNorms.best(runs)
    return MinimalNormComparison(norm, eps_sorted, runs, best, evaluation, growing_s, seed, growing_cpu)
