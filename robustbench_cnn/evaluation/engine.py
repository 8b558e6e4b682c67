"""The evaluation engine: per-sample worst case over a cascade of attacks, along a growing epsilon ball.

For each epsilon (ascending), the cascade's attacks run one after another, each only on the points still
robust (as AutoAttack does); points the model misclassifies are never attacked, and a point broken at a
smaller epsilon counts as broken at every larger one (its adversarial example lies in the larger ball), so
a whole robustness curve costs little more than its largest epsilon. The loop along the epsilons is
:class:`~robustbench_cnn.attacks.curve.GrowingBall`; this module adds the worst case, the flags and the tables.
The cascade's trailing checks (attacks declaring ``curve_order = "descending"``: the Square check of ``fast``) run
after it, from the largest epsilon down, on the points the other attacks left robust, skipping at each epsilon the
points they left unbroken at the one above (:func:`~robustbench_cnn.attacks.curve.shrinking_checks`).

``evaluate(model, x, y, "linf", [0, 0.1, 0.3], "standard")`` works for any ``nn.Module`` taking images in
[0, 1] and returning logits.
"""

from __future__ import annotations

import difflib
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks import ATTACKS, Attack, all_targets, choose_targets, get_attack
from robustbench_cnn.attacks.curve import BallStep, GrowingBall, shrinking_checks
from robustbench_cnn.core.errors import UnknownNameError
from robustbench_cnn.core.model_utils import batched_logits, cpu_layout, eval_mode
from robustbench_cnn.core.progress import make_progress
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel
from robustbench_cnn.evaluation.flags import Flag, check_finite_outputs, curve_flags, flag, model_flags

#: Attack cascade presets by name: (attack, params) in order. Cheap strong attacks first, black-box checks last.
CASCADES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # A fast check: iterative PGD, then FGSM as a masking check (single-step must not beat iterative).
    "quick": [("pgd", {"steps": 20}), ("fgsm", {})],
    # The default: AutoAttack-strength at a fraction of its time (docs/fast_cascade.md). Native APGD-CE, native
    # multi-targeted APGD on the 3 MALT-ranked targets, FGSM as a single-step check, and AutoAttack's Square run,
    # abandoned after 2500 of its 5000 queries on a mini-batch where it has broken no point by then.
    "fast": [
        ("apgd", {}),
        ("apgd-mt", {}),
        ("fgsm", {}),
        ("square-check", {}),
    ],
    # What "fast" runs on a randomized model (AutoAttack's rand version, native): APGD-CE and APGD-DLR with
    # EOT (20 gradient samples per step, set by evaluate), every point stopping at its first adversarial iterate.
    "fast-rand": [("apgd", {}), ("apgd", {"loss": "dlr"})],
    # AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square 5000) preceded by PGD-40, so it is at least as strong.
    "standard": [
        ("pgd", {"steps": 40}),
        ("apgd-ce", {}),
        ("apgd-t", {}),
        ("fab-t", {}),
        ("square", {"n_queries": 5000}),
    ],
    # More restarts and more diverse losses on top of standard.
    "plus": [
        ("pgd", {"steps": 100, "restarts": 5}),
        ("apgd-ce", {"n_restarts": 5}),
        ("apgd-dlr", {"n_restarts": 5}),
        ("apgd-t", {}),
        ("fab-t", {}),
        ("square", {"n_queries": 5000, "n_restarts": 1}),
        ("fgsm", {}),
    ],
}

#: The cascade meant wherever a default cascade is: ``evaluate``, ``rbc evaluate``, the white-box cell, the plans and
#: ``rbc defend``'s end-of-training evaluation of the kept state.
DEFAULT_CASCADE = "fast"

#: A cascade preset's variant for randomized models (two forward passes differ), run in its place.
RANDOMIZED_VARIANTS = {"fast": "fast-rand"}

#: Gradient samples per step for randomized models (AutoAttack's ``rand`` version uses 20 for APGD).
EOT_SAMPLES = 20

#: Fraction of points a single-step attack may break beyond the iterative ones before it is flagged (an
#: isolated point is noise; AutoAttack-style black-box checks flag any point).
SINGLE_STEP_TOLERANCE = 0.005

TARGET_POLICIES = ("random", "least-likely", "next", "class:K", "all")


def check_attack_names(attacks: str) -> None:
    """Check a cascade name or comma-separated attack (or cascade) names before any work.

    An unknown name raises :class:`UnknownNameError` suggesting close cascade *and* attack names
    (``quik`` -> ``quick``).
    """
    for name in filter(None, (part.strip() for part in attacks.split(","))):
        if name not in CASCADES and name not in ATTACKS:
            raise unknown_cascade_or_attack(name)


def unknown_cascade_or_attack(name: str) -> UnknownNameError:
    """The error for a name that is neither a cascade nor a registered attack, with close names of both."""
    cascades = sorted(CASCADES)
    close = difflib.get_close_matches(name.lower(), cascades + list(ATTACKS), n=3, cutoff=0.5)
    suggestions = list(dict.fromkeys(close + ATTACKS.suggest(name)))[:3]
    return UnknownNameError("cascade or attack", name, suggestions, cascades + list(ATTACKS))


def resolve_attacks(
    attacks: str | Sequence[str | Attack | tuple[str, dict[str, Any]]], norm: Norm
) -> tuple[str, list[Attack]]:
    """A cascade name, attack names, (name, params) pairs or instances -> (cascade label, attacks for ``norm``).

    Attacks of a cascade preset that do not support ``norm`` are left out (e.g. FAB-T has no L1); a single attack
    that does not support it is an error.
    """
    if isinstance(attacks, str):
        if attacks in CASCADES:
            chosen = [get_attack(name, **params) for name, params in CASCADES[attacks]]
            kept = [a for a in chosen if norm in a.norms]
            if not kept:
                raise ValueError(f"cascade {attacks!r} has no attack for norm {norm.value}")
            return attacks, kept
        items: Sequence[Any] = [a.strip() for a in attacks.split(",") if a.strip()]
    else:
        items = attacks
    built: list[Attack] = []
    for item in items:
        if isinstance(item, Attack):
            built.append(item)
        elif isinstance(item, tuple):
            built.append(get_attack(item[0], **item[1]))
        elif item in CASCADES:
            built.extend(resolve_attacks(item, norm)[1])
        elif str(item) in ATTACKS:
            built.append(get_attack(str(item)))
        else:
            raise unknown_cascade_or_attack(str(item))
    for attack in built:
        if attack.threat_kind == "patch":
            raise ValueError(
                f"attack {attack.name!r} is a patch attack: evaluate it with rbc patch --threat patch:AREA"
            )
        if norm not in attack.norms:
            supported = ", ".join(n.value for n in attack.norms)
            raise ValueError(f"attack {attack.name!r} does not support norm {norm.value}: use {supported}")
    if not built:
        raise ValueError("no attacks given")
    label = attacks if isinstance(attacks, str) else ",".join(a.name for a in built)
    return label, built


@dataclass
class EpsOutcome:
    """The cascade at one epsilon: each attack's result (on the points it ran on) and the worst case."""

    eps: float
    steps: list[AttackResult]  # per attack, in cascade order, covering all N points
    robust: torch.Tensor  # [N] bool: robust to every attack at this eps (and every smaller eps)
    broken_by: torch.Tensor  # [N] int: index of the attack that broke the point, -1 if robust / not attacked
    x_adv: torch.Tensor  # [N,...] worst-case adversarial examples (clean input where robust)
    pred_adv: torch.Tensor
    perturbation_norm: torch.Tensor
    queries: torch.Tensor  # [N] model queries spent on each point at this epsilon (all attacks; not cumulative)
    cumulative_robust: list[float]  # robust accuracy after each attack in the cascade
    elapsed_s: float


@dataclass
class Evaluation:
    """A whole evaluation: clean predictions, the curve of cascades, and the validity flags."""

    norm: Norm
    cascade: str  # the cascade's label: a preset name or the attack names
    attacks: list[Attack]
    labels: torch.Tensor
    pred_clean: torch.Tensor
    targets: torch.Tensor  # [N] int, -1 when untargeted
    target_policy: str | None
    outcomes: list[EpsOutcome]
    flags: list[Flag] = field(default_factory=list)
    num_classes: int = 0
    seed: int = 0

    @property
    def targeted(self) -> bool:
        return self.target_policy is not None

    @property
    def clean_correct(self) -> torch.Tensor:
        return self.pred_clean == self.labels

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean())

    @property
    def attackable(self) -> torch.Tensor:
        """The points the attacks run on: clean-correct and, when targeted, with a target other than the label
        (a point already of its target class is never attacked and stays robust)."""
        if self.targeted:
            return self.clean_correct & (self.targets != self.labels)
        return self.clean_correct

    @property
    def eps_list(self) -> list[float]:
        return [o.eps for o in self.outcomes]

    def robust_accuracy(self, eps: float | None = None) -> float:
        """Worst-case robust accuracy at ``eps`` (default: the largest epsilon)."""
        if eps is None:
            return float(self.outcomes[-1].robust.float().mean())
        for o in self.outcomes:
            if o.eps == eps:
                return float(o.robust.float().mean())
        raise ValueError(f"eps {eps:g} was not evaluated: use one of {', '.join(f'{e:g}' for e in self.eps_list)}")

    def curve(self) -> list[tuple[float, float]]:
        return [(o.eps, float(o.robust.float().mean())) for o in self.outcomes]

    def flags_at(self, eps: float) -> list[Flag]:
        return [f for f in self.flags if f.eps is None or f.eps == eps]


def _empty_result(
    x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, targets: torch.Tensor, threat: ThreatModel, attack: Attack
) -> AttackResult:
    n = y.numel()
    return AttackResult(
        x_adv=x.clone(),
        success=torch.zeros(n, dtype=torch.bool),
        clean_correct=pred == y,
        perturbation_norm=torch.zeros(n),
        pred_adv=pred.clone(),
        target=targets.clone(),
        queries=torch.zeros(n, dtype=torch.int64),
        threat=threat,
        attack=attack.name,
        params=dict(attack.params),
    )


def pick_targets(policy: str, logits: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return choose_targets(policy, logits, y, logits.shape[1], generator)


@torch.no_grad()
def _clean_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Clean logits on the CPU as float (no graph); ``ValueError`` for an empty batch, ``NonFiniteOutputError``
    for NaN or infinite outputs (before any attack runs)."""
    logits = batched_logits(model, x, batch_size)
    if logits is None:
        raise ValueError("no images to evaluate")
    logits = logits.float().cpu()
    check_finite_outputs(logits)
    return logits


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: Norm | str,
    eps_list: Iterable[float],
    attacks: str | Sequence[Any] = DEFAULT_CASCADE,
    *,
    targeted: bool = False,
    target_policy: str = "random",
    seed: int = 0,
    batch_size: int | None = 256,
    progress: bool = False,
    device: str | torch.device | None = None,
    warm_start: bool = True,
    eot: int | None = None,
) -> Evaluation:
    """Evaluate ``model`` on ``(x, y)`` against a cascade of attacks for each epsilon.

    Args:
        model: any ``nn.Module`` taking images in [0, 1] and returning logits.
        x, y: images N x C x H x W in [0, 1] and int64 labels.
        norm: ``"linf"``, ``"l2"``, ... (the threat model's norm).
        eps_list: epsilons; evaluated in ascending order with the growing-ball trick.
        attacks: a cascade name (``fast``: the default :data:`DEFAULT_CASCADE`, ``quick``, ``standard``, ``plus``),
            comma-separated attack names, or a list of names, ``(name, params)`` pairs or ``Attack`` instances.
            A preset with a randomized variant (:data:`RANDOMIZED_VARIANTS`: ``fast`` -> ``fast-rand``) runs
            that variant on a randomized model (the ``eot`` flag says so).
        targeted: run targeted attacks with ``target_policy`` (random | least-likely | next | class:K); attacks
            that take no targets are left out of a targeted cascade. For ``all`` use :func:`evaluate_all_targets`.
        seed: seeds target choice and every attack.
        batch_size: attack mini-batch size.
        warm_start: along the curve, attacks that accept a starting point (PGD) start each still-robust point
            at their own last iterate from the previous epsilon (it lies in the larger ball) plus a random step
            the size of the epsilon increment, instead of a fresh random start; later restarts stay random.
            Default True: it continues the ascent instead of repeating it (measured against fresh starts in
            ``docs/measurements.md``). False: every epsilon starts afresh, as foolbox does.
        eot: gradient samples per step for the attacks that take them (PGD ``eot_samples``, APGD ``eot_iter``).
            None (default): 1, or :data:`EOT_SAMPLES` (20) when two passes of the model differ (a randomized
            defense), with an ``eot`` flag; attacks that cannot average gradients run unchanged.
    Returns:
        An :class:`Evaluation` whose ``robust_accuracy(eps)`` is the per-sample worst case over the attacks.
    """
    norm = norm if isinstance(norm, Norm) else Norm.parse(str(norm))
    eps_sorted = sorted({float(e) for e in eps_list})
    if not eps_sorted:
        raise ValueError("no epsilons given")
    threats = [ThreatModel(norm, eps) for eps in eps_sorted]  # each epsilon validated here, once
    cascade, chain = resolve_attacks(attacks, norm)
    if targeted:
        if target_policy == "all":
            raise ValueError("target policy 'all' gives a success matrix: use evaluate_all_targets")
        chain = [a for a in chain if a.supports_targeted]
        if not chain:
            raise ValueError(f"none of the attacks in {cascade!r} supports targets")
    dev = torch.device(device) if device is not None else model_device(model, x)
    was_training = model.training
    # every module's mode and requires_grad restored, also on errors; the architecture's CPU layout meanwhile
    with eval_mode(model), cpu_layout(model, dev):
        x, y = x.to(dev), y.to(dev)
        logits = _clean_logits(model, x, batch_size or 256)
        pred = logits.argmax(1)
        skipped: list[str] = []
        if isinstance(attacks, str) and attacks in CASCADES:  # a preset leaves out what the class count rules out
            runnable = [a for a in chain if a.min_classes <= logits.shape[1]] or chain
            skipped = [a.name for a in chain if a not in runnable]
            chain = runnable
        y_cpu = y.cpu()
        targets = pick_targets(target_policy, logits, y_cpu, seed) if targeted else torch.full_like(y_cpu, -1)
        flags = model_flags(model, x, y, was_training)
        if skipped:
            flags.append(flag("attacks-skipped", f"{', '.join(skipped)} (the model has {logits.shape[1]} classes)"))
        randomized = any(f.code == "randomized" for f in flags)
        variant = RANDOMIZED_VARIANTS.get(attacks) if isinstance(attacks, str) and randomized else None
        if variant is not None and not targeted:
            chain = [a for a in resolve_attacks(variant, norm)[1] if a.min_classes <= logits.shape[1]] or chain
        samples = eot if eot is not None else (EOT_SAMPLES if randomized else 1)
        if samples > 1:
            chain, changed = with_eot(chain, samples)
            if changed:
                ran = f"cascade {cascade} ran {variant}: " if variant is not None and not targeted else ""
                flags.append(flag("eot", f"{ran}{samples} samples per step in {', '.join(changed)}"))
        outcomes = _run_cascade(
            model, x, y, logits, targets, threats, chain, targeted, seed, batch_size, progress, warm_start
        )
    evaluation = Evaluation(
        norm,
        cascade,
        chain,
        y_cpu,
        pred,
        targets,
        target_policy if targeted else None,
        outcomes,
        flags,
        int(logits.shape[1]),
        seed,
    )
    evaluation.flags.extend(_cascade_flags(evaluation, int(x[0].numel())))
    return evaluation


def with_eot(chain: list[Attack], samples: int) -> tuple[list[Attack], list[str]]:
    """``chain`` with each attack that averages gradients (its ``eot_param`` is not None) rebuilt with ``samples``
    gradient samples per step; returns the chain and the names of the attacks changed."""
    out, changed = [], []
    for attack in chain:
        key = attack.eot_param
        if key is None or int(attack.params[key]) >= samples:
            out.append(attack)
            continue
        out.append(type(attack)(**{**attack.params, key: samples}))
        changed.append(attack.name)
    return out, changed


def _run_cascade(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    threats: list[ThreatModel],
    chain: list[Attack],
    targeted: bool,
    seed: int,
    batch_size: int | None,
    progress: bool,
    warm_start: bool,
) -> list[EpsOutcome]:
    """The cascade along the curve, with the worst case per point: which attack broke it, its adversarial example,
    prediction, norm and the queries spent per epsilon.

    The attacks run on :class:`~robustbench_cnn.attacks.curve.GrowingBall`, except the cascade's trailing checks
    (``curve_order = "descending"``, e.g. the Square check), which then run from the largest epsilon down on the
    points the others left robust (:func:`~robustbench_cnn.attacks.curve.shrinking_checks`).
    """
    n = y.numel()
    pred = logits.argmax(1)
    correct = pred == y.cpu()
    # a targeted attack skips a point whose target is its own label: it is never attacked and stays robust
    attackable = correct & (targets != y.cpu()) if targeted else correct
    tail = _descending_tail(chain)
    growing, checks = chain[:tail], chain[tail:]
    ball = GrowingBall(
        growing,
        model,
        x,
        y,
        attackable=attackable,
        clean_logits=logits,
        targets=targets if targeted else None,
        seed=seed,
        batch_size=batch_size,
        warm_start=warm_start,
    )
    x_cpu = x.detach().cpu()
    best_x, best_pred = x_cpu.clone(), pred.clone()
    best_norm = torch.zeros(n)
    broken_by = torch.full((n,), -1, dtype=torch.int64)
    outcomes: list[EpsOutcome] = []

    def record(outcome: EpsOutcome, k: int, step: AttackResult, ball_step: BallStep) -> None:
        """Write one attack's run at one epsilon into ``step`` (all N points) and the worst case of ``outcome``."""
        sub, idx = ball_step.result, ball_step.idx
        if sub is not None:
            hit = sub.success.cpu()
            step.success[idx] = hit
            step.x_adv[idx] = sub.x_adv.cpu()
            step.pred_adv[idx] = sub.pred_adv.cpu()
            step.perturbation_norm[idx] = sub.perturbation_norm.cpu()
            step.queries[idx] = sub.queries.cpu()
            step.elapsed_s = sub.elapsed_s
            newly = idx[hit]
            outcome.robust[newly] = False
            outcome.broken_by[newly] = k
            outcome.x_adv[newly] = sub.x_adv.cpu()[hit]
            outcome.pred_adv[newly] = sub.pred_adv.cpu()[hit]
            outcome.perturbation_norm[newly] = sub.perturbation_norm.cpu()[hit]
            outcome.queries[idx] += sub.queries.cpu()
        outcome.steps.append(step)
        outcome.cumulative_robust.append(float(outcome.robust.float().mean()))

    with make_progress(enabled=progress) as bar:
        task = bar.add_task("attacks", total=len(threats) * len(chain))

        def describe(attack: Attack, threat: ThreatModel) -> None:
            bar.update(task, description=f"{attack.name} {threat}")

        for threat in threats:
            eps = threat.eps
            start = time.perf_counter()
            outcome = EpsOutcome(
                eps,
                [],
                correct & ball.unbroken,  # robust to every attack at every smaller eps
                broken_by.clone(),
                best_x.clone(),
                best_pred.clone(),
                best_norm.clone(),
                torch.zeros(n, dtype=torch.int64),  # queries at this epsilon, summed over the cascade
                [],
                0.0,
            )
            if eps == 0:  # nothing to attack: a second clean pass checks that the model's answers reproduce
                again = _clean_logits(model, x, batch_size or 256).argmax(1)
                changed = outcome.robust & (again != y.cpu())
                outcome.robust &= ~changed  # this epsilon only (eps0-mismatch flag); the ball is not run at eps 0
                outcome.pred_adv[changed] = again[changed]
                for attack in chain:
                    describe(attack, threat)
                    outcome.steps.append(_empty_result(x_cpu, y.cpu(), pred, targets, threat, attack))
                    outcome.cumulative_robust.append(float(outcome.robust.float().mean()))
                    bar.advance(task)
            else:
                for k, ball_step in enumerate(ball.run(threat, before=describe)):
                    record(outcome, k, _empty_result(x_cpu, y.cpu(), pred, targets, threat, chain[k]), ball_step)
                    bar.advance(task)
                # the worst case so far carries to the larger epsilons (the checks' breaks need not: see below)
                broken_by, best_x = outcome.broken_by.clone(), outcome.x_adv.clone()
                best_pred, best_norm = outcome.pred_adv.clone(), outcome.perturbation_norm.clone()
            outcome.elapsed_s = time.perf_counter() - start
            outcomes.append(outcome)
        attacked = [o for o in outcomes if o.eps > 0]
        if checks and attacked:
            # a point a check breaks at an epsilon is already broken at every larger one, so only that epsilon changes
            walk = shrinking_checks(
                checks,
                model,
                x,
                y,
                [ThreatModel(threats[0].norm, o.eps) for o in attacked],
                [o.robust.clone() for o in attacked],
                clean_logits=logits,
                seed=seed,
                batch_size=batch_size,
                before=describe,
            )
            for outcome, steps in zip(attacked, walk):
                start = time.perf_counter()
                for j, ball_step in enumerate(steps):
                    empty = _empty_result(x_cpu, y.cpu(), pred, targets, ball_step.threat, checks[j])
                    record(outcome, tail + j, empty, ball_step)
                    outcome.elapsed_s += empty.elapsed_s
                    bar.advance(task)
                outcome.elapsed_s += time.perf_counter() - start
    return outcomes


def _descending_tail(chain: list[Attack]) -> int:
    """Where the cascade's trailing run of checks that walk the curve downwards (``curve_order``) starts."""
    tail = len(chain)
    while tail > 0 and chain[tail - 1].curve_order == "descending":
        tail -= 1
    return tail


def _cascade_flags(ev: Evaluation, input_numel: int) -> list[Flag]:
    """Flags read off the cascade: weaker attacks beating stronger ones, and the curve's shape."""
    flags = curve_flags(
        ev.norm,
        ev.eps_list,
        [float(o.robust.float().mean()) for o in ev.outcomes],
        ev.clean_accuracy,
        ev.num_classes,
        input_numel,
    )
    iterative_seen = False
    white_seen = False
    # broken_by accumulates over the growing ball: count only the points broken at each eps itself
    before = [ev.attackable] + [o.robust for o in ev.outcomes[:-1]]
    for k, attack in enumerate(ev.attacks):
        for o, robust_before in zip(ev.outcomes, before):
            new = int(((o.broken_by == k) & robust_before).sum()) if o.eps > 0 else 0
            if (
                attack.black_box
                and white_seen
                and new
                and not any(f.code == "black-box-beats-white-box" and f.eps == o.eps for f in flags)
            ):
                flags.append(flag("black-box-beats-white-box", f"{attack.name} broke {new} more points", o.eps))
            if attack.single_step and iterative_seen and new > SINGLE_STEP_TOLERANCE * ev.labels.numel():
                flags.append(flag("single-step-beats-iterative", f"{attack.name} broke {new} more points", o.eps))
        if not attack.black_box:
            white_seen = True
            if not attack.single_step:
                iterative_seen = True
    return flags


def evaluate_all_targets(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack: str | Attack = "pgd",
    *,
    seed: int = 0,
    batch_size: int | None = 256,
    clean_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Targeted success matrix (true class x target class) for target policy ``all``.

    Entry [i, j] is the fraction of correctly classified points of class i that the attack moved to class j
    (NaN on the diagonal and where class i has no correctly classified points). ``clean_logits`` (N x K), when
    the caller has them (e.g. one pass for several epsilons), save the clean forward pass.
    """
    attack = attack if isinstance(attack, Attack) else get_attack(attack)
    if not attack.supports_targeted:
        raise ValueError(f"attack {attack.name!r} does not support targets")
    dev = model_device(model, x)
    x, y = x.to(dev), y.to(dev)
    y_cpu = y.cpu()
    # the clean pass too: a model left in train mode must not update batch-norm stats; the CPU layout meanwhile
    with eval_mode(model), cpu_layout(model, dev):
        logits = clean_logits if clean_logits is not None else _clean_logits(model, x, batch_size or 256)
        check_finite_outputs(logits)  # also the caller's logits: no attack runs against NaN outputs
        num_classes = logits.shape[1]
        matrix = torch.full((num_classes, num_classes), float("nan"))
        for target_class in all_targets(num_classes):
            targets = torch.full_like(y, int(target_class))
            result = attack(model, x, y, threat, targets=targets, seed=seed, batch_size=batch_size, clean_logits=logits)
            ok = result.clean_correct.cpu() & (y_cpu != int(target_class))
            for i in range(num_classes):
                sel = ok & (y_cpu == i)
                if sel.any():
                    matrix[i, int(target_class)] = result.success.cpu()[sel].float().mean()
    return matrix


def model_device(model: nn.Module, x: torch.Tensor) -> torch.device:
    """The device of ``model``'s first parameter or buffer; ``x``'s device for a model that has neither."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else x.device


__all__ = [
    "ATTACKS",
    "CASCADES",
    "DEFAULT_CASCADE",
    "Evaluation",
    "EpsOutcome",
    "evaluate",
    "evaluate_all_targets",
    "resolve_attacks",
]
