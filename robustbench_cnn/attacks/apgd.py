"""Native APGD (Croce & Hein 2020) on the fast input-gradient kernels, with per-point early stop.

Two registered attacks:

- ``apgd``: untargeted (or user-targeted) APGD on the cross-entropy, DLR or targeted-DLR loss;
- ``apgd-mt``: multi-targeted APGD on the targeted DLR loss against the ``n_target_classes`` most promising classes
  of each point, ranked MALT-style (Melamed et al. 2024) or by the clean logits (AutoAttack's ranking).

The iteration is AutoAttack's ``APGDAttack.attack_single_run``: step size ``2 eps``, momentum 0.75, checkpoints at
``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` of the iterations, where a point's step is
halved (and it restarts from its best iterate) when fewer than ``rho`` of the steps since the last checkpoint raised
its loss, or when its step was not halved at the last checkpoint and its best loss has not risen since. Unlike the
library, a point leaves the batch as soon as one of its iterates is misclassified (it keeps that iterate), so the
gradient passes are spent on the points still robust only; and the gradients go through
:mod:`core.input_gradients` (``fast_gradient_kernels``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.attacks.base import Attack
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.geometry import TINY, per_sample, project
from robustbench_cnn.core.types import Norm, ThreatModel

#: AutoAttack's APGD constants: initial step ``2 eps``, momentum weight 0.75, checkpoint schedule fractions.
INITIAL_STEP = 2.0
MOMENTUM = 0.75
FIRST_CHECKPOINT, MIN_CHECKPOINT_GAP, CHECKPOINT_DECREASE = 0.22, 0.06, 0.03
TARGET_RANKINGS = ("malt", "logits")


def _dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Untargeted DLR loss ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)`` (Croce & Hein 2020), per sample."""
    if logits.shape[1] < 3:
        raise ValueError("the DLR loss needs a model with at least 3 classes")
    z_sorted, order = logits.sort(dim=1)
    top_is_y = (order[:, -1] == y).float()
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1.0 - top_is_y)
    return -(z_y - other) / (z_sorted[:, -1] - z_sorted[:, -3] + TINY)


def _dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (Croce & Hein 2020), per sample."""
    if logits.shape[1] < 4:
        raise ValueError("the targeted DLR loss needs a model with at least 4 classes")
    z_sorted = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + TINY)


def _loss(name: str, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    if name == "ce":
        return (
            F.cross_entropy(logits, y, reduction="none")
            if target is None
            else -F.cross_entropy(logits, target, reduction="none")
        )
    if name == "dlr":
        return _dlr(logits, y)
    if target is None:
        raise ValueError("the dlr-targeted loss needs targets")
    return _dlr_targeted(logits, y, target)


def checkpoints(n_iter: int) -> list[int]:
    """The iterations after which APGD checks its step size (AutoAttack's integer schedule): the first after
    ``max(int(0.22 n_iter), 1)`` iterations, then gaps shrinking by ``max(int(0.03 n_iter), 1)`` down to
    ``max(int(0.06 n_iter), 1)``."""
    gap = max(int(FIRST_CHECKPOINT * n_iter), 1)
    decrease, smallest = max(int(CHECKPOINT_DECREASE * n_iter), 1), max(int(MIN_CHECKPOINT_GAP * n_iter), 1)
    out, at = [], gap
    while at <= n_iter:
        out.append(at)
        gap = max(gap - decrease, smallest)
        at += gap
    return out


def _step(xa: torch.Tensor, grad: torch.Tensor, step: torch.Tensor, x0: torch.Tensor, threat: ThreatModel):
    """``project(x_adv + step * direction(grad))`` with per-sample ``step`` (linf: sign, l2: normalised)."""
    if threat.norm is Norm.LINF:
        direction = grad.sign()
    else:
        direction = grad / per_sample(grad.flatten(1).norm(dim=1).clamp_min(TINY), grad)
    return project(xa + per_sample(step, xa) * direction, x0, threat)


def apgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    loss: str,
    n_iter: int,
    rho: float,
    generator: torch.Generator,
    target: torch.Tensor | None = None,
    eot_iter: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from a random start; returns ``(x_adv, success)``.

    A point stops as soon as an iterate is adversarial (misclassified, or of class ``target`` when ``loss`` is
    ``ce`` with targets: a user-targeted attack); its ``x_adv`` is that iterate. Points never broken return the
    iterate of highest loss. ``eot_iter`` averages that many gradients per step (randomized models).
    """
    hit_target = target is not None and loss == "ce"
    n = x.shape[0]
    eps = float(threat.eps)
    if threat.norm is Norm.LINF:
        t = 2 * torch.rand(x.shape, generator=generator, device=generator.device).to(x) - 1
        start = x + eps * t / per_sample(t.flatten(1).abs().amax(dim=1).clamp_min(TINY), t)
    else:
        t = torch.randn(x.shape, generator=generator, device=generator.device).to(x)
        start = x + eps * t / per_sample(t.flatten(1).norm(dim=1).clamp_min(TINY), t)
    xa = start.clamp(0.0, 1.0)
    out = xa.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)

    def grad_at(z: torch.Tensor, yy: torch.Tensor, tt: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        g_sum, logit_sum, loss_sum = torch.zeros_like(z), None, None
        for _ in range(eot_iter):
            zz = z.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(zz)
                values = _loss(loss, logits, yy, tt)
                (g,) = torch.autograd.grad(values.sum(), [zz])
            g_sum += g
            logit_sum = logits.detach() if logit_sum is None else logit_sum + logits.detach()
            loss_sum = values.detach() if loss_sum is None else loss_sum + values.detach()
        return logit_sum / eot_iter, loss_sum / eot_iter, g_sum / eot_iter

    def adversarial(logits: torch.Tensor, yy: torch.Tensor, tt: torch.Tensor | None) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred == tt if hit_target else pred != yy

    # per-point state; `pos` maps rows to the original indices, rows leave when their point is broken
    pos = torch.arange(n, device=x.device)
    x0, yy, tt = x, y, target
    logits, cur_loss, grad = grad_at(xa, yy, tt)
    hit = adversarial(logits, yy, tt)
    out[pos[hit]], success[pos[hit]] = xa[hit], True
    step = torch.full((n,), INITIAL_STEP * eps, device=x.device, dtype=x.dtype)
    best_x, best_grad, best_loss = xa.clone(), grad.clone(), cur_loss.clone()
    prev = xa.clone()
    increases = torch.zeros(n, device=x.device)
    last_best = best_loss.clone()
    reduced_last = torch.zeros(n, dtype=torch.bool, device=x.device)
    checks = set(checkpoints(n_iter))
    last_check = 0

    def keep(mask: torch.Tensor) -> None:
        nonlocal pos, x0, yy, tt, xa, grad, step, best_x, best_grad, best_loss, prev, increases, last_best
        nonlocal reduced_last, cur_loss
        pos, x0, yy, xa, grad, step = pos[mask], x0[mask], yy[mask], xa[mask], grad[mask], step[mask]
        tt = tt[mask] if tt is not None else None
        best_x, best_grad, best_loss, prev = best_x[mask], best_grad[mask], best_loss[mask], prev[mask]
        increases, last_best, reduced_last, cur_loss = (
            increases[mask],
            last_best[mask],
            reduced_last[mask],
            cur_loss[mask],
        )

    if hit.any():
        keep(~hit)
    for i in range(n_iter):
        if pos.numel() == 0:
            break
        with torch.no_grad():
            a = MOMENTUM if i > 0 else 1.0
            z = _step(xa, grad, step, x0, threat)
            z = project(xa + (z - xa) * a + (xa - prev) * (1 - a), x0, threat)
            prev, xa = xa, z
        logits, new_loss, grad = grad_at(xa, yy, tt)
        hit = adversarial(logits, yy, tt)
        if hit.any():
            out[pos[hit]], success[pos[hit]] = xa[hit], True
        increases += (new_loss > cur_loss).float()
        cur_loss = new_loss
        better = new_loss > best_loss
        rows = per_sample(better, xa)
        best_x, best_grad = torch.where(rows, xa, best_x), torch.where(rows, grad, best_grad)
        best_loss = torch.where(better, new_loss, best_loss)
        if i + 1 in checks:
            span = i + 1 - last_check
            oscillating = increases <= span * rho
            no_gain = ~reduced_last & (last_best >= best_loss)
            halve = oscillating | no_gain
            reduced_last, last_best = halve, best_loss.clone()
            step[halve] /= 2.0
            xa[halve], grad[halve] = best_x[halve], best_grad[halve]
            increases.zero_()
            last_check = i + 1
        if hit.any():
            keep(~hit)
    if pos.numel():
        out[pos] = best_x
    return out, success


def _check(attack: Attack) -> None:
    p = attack.params
    if int(p["n_iter"]) < 1 or int(p["n_restarts"]) < 1 or int(p["eot_iter"]) < 1:
        raise ValueError(f"{attack.name} needs n_iter, n_restarts and eot_iter >= 1")
    if not 0 < float(p["rho"]) <= 1:
        raise ValueError(f"{attack.name} needs 0 < rho <= 1")


@ATTACKS.register("apgd")
class APGD(Attack):
    """Auto-PGD, native: step-size halving at checkpoints, momentum 0.75, per-point early stop.

    Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020 (https://arxiv.org/abs/2003.01690).

    Distance: linf, l2 (AutoAttack's steps and projections).

    Arguments (AutoAttack defaults):
        n_iter (int): iterations per restart (default 100).
        n_restarts (int): random restarts, each on the points still robust (default 1).
        loss (str): ``ce`` (default) or ``dlr`` (needs 3 classes); with user targets, ``ce`` descends the
            target's cross-entropy and succeeds on the target class.
        rho (float): step-size halving threshold (default 0.75).
        eot_iter (int): gradient samples per step for randomized models (default 1; ``evaluate`` raises it to 20).

    Targeted: yes (``loss="ce"``). Deterministic: no (random start; seeded).
    Cost: at most ``n_iter * eot_iter`` forward+backward passes per restart and point; a point stops at its first
    adversarial iterate.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> get_attack("apgd", loss="dlr")(model, x, y, ThreatModel.parse("linf:0.3"), seed=0).robust_accuracy
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = True
    deterministic = False
    kind = "white-box"
    black_box = False
    single_step = False
    eot_param = "eot_iter"
    fast_gradient_kernels = True
    defaults = {"n_iter": 100, "n_restarts": 1, "loss": "ce", "rho": 0.75, "eot_iter": 1}

    def __init__(self, **params):
        super().__init__(**params)
        _check(self)
        if self.params["loss"] not in ("ce", "dlr"):
            raise ValueError(f"invalid loss {self.params['loss']!r} for attack 'apgd': use ce or dlr")

    @property
    def min_classes(self) -> int:  # type: ignore[override]
        return 3 if self.params["loss"] == "dlr" else 2

    def perturb(self, model, x, y, threat, targets, generator):
        p = self.params
        if targets is not None and p["loss"] != "ce":
            raise ValueError("apgd takes user targets with loss='ce' only")
        out = x.clone()
        todo = torch.arange(x.shape[0], device=x.device)
        for _ in range(int(p["n_restarts"])):
            tt = targets[todo] if targets is not None else None
            adv, hit = apgd_run(
                model,
                x[todo],
                y[todo],
                threat,
                p["loss"],
                int(p["n_iter"]),
                float(p["rho"]),
                generator,
                tt,
                int(p["eot_iter"]),
            )
            out[todo] = adv
            todo = todo[~hit]
            if todo.numel() == 0:
                break
        return out


def rank_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: Norm, ranking: str) -> torch.Tensor:
    """Classes other than ``y``, most promising first (N x K-1).

    ``logits``: by clean logit, highest first (AutoAttack's APGD-T). ``malt`` (Melamed, Yehudai & Vardi,
    "Rethinking Adversarial Robustness: Mesoscopic Almost Linearity Targeting", 2024): by the linear estimate of
    the distance to class ``j``'s boundary, ``(z_y - z_j) / ||grad_x (z_y - z_j)||_*`` (dual norm: l1 for linf, l2
    for l2), smallest first; one backward pass per class.
    """
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xr)
        k = logits.shape[1]
        if ranking == "logits":
            score = logits.detach().clone()
        else:
            z_y = logits.gather(1, y[:, None]).squeeze(1)
            score = torch.empty_like(logits.detach())
            for j in range(k):
                diff = z_y - logits[:, j]
                (g,) = torch.autograd.grad(diff.sum(), [xr], retain_graph=j + 1 < k)
                dual = g.flatten(1).abs().sum(1) if norm is Norm.LINF else g.flatten(1).norm(dim=1)
                score[:, j] = -diff.detach() / dual.clamp_min(TINY)  # higher = closer boundary
    score.scatter_(1, y[:, None], float("-inf"))
    return score.argsort(dim=1, descending=True)[:, : k - 1]


@ATTACKS.register("apgd-mt")
class APGDMultiTargeted(Attack):
    """Multi-targeted APGD (native) on the targeted DLR loss, against the top classes ranked MALT-style.

    Paper: Croce & Hein, ICML 2020 (https://arxiv.org/abs/2003.01690), APGD-T; target ranking of Melamed,
    Yehudai & Vardi, "Rethinking Adversarial Robustness: Mesoscopic Almost Linearity Targeting", 2024
    (https://arxiv.org/abs/2402.14648).

    Distance: linf, l2.

    Arguments:
        n_iter (int): iterations per target (default 100, as AutoAttack).
        n_target_classes (int): targets tried per point, in ranking order, each only on the points still robust
            (default 3; AutoAttack tries 9); capped at classes - 1.
        ranking (str): ``malt`` (default: linearised distance to each class's boundary) or ``logits`` (the clean
            logits' order, AutoAttack's).
        n_restarts (int): restarts per target (default 1). rho (float): default 0.75.
        eot_iter (int): gradient samples per step for randomized models (default 1).

    Success is misclassification (as AutoAttack's APGD-T): no user targets. Needs >= 4 classes.
    Deterministic: no (seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("apgd-mt", n_target_classes=3)(model, x, y, ThreatModel.parse("linf:0.3")).robust_accuracy
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = False
    deterministic = False
    kind = "white-box"
    black_box = False
    single_step = False
    eot_param = "eot_iter"
    fast_gradient_kernels = True
    min_classes = 4
    defaults = {"n_iter": 100, "n_target_classes": 3, "ranking": "malt", "n_restarts": 1, "rho": 0.75, "eot_iter": 1}

    def __init__(self, **params):
        super().__init__(**params)
        _check(self)
        if int(self.params["n_target_classes"]) < 1:
            raise ValueError("apgd-mt needs n_target_classes >= 1")
        if self.params["ranking"] not in TARGET_RANKINGS:
            raise ValueError(f"invalid ranking {self.params['ranking']!r}: use one of {', '.join(TARGET_RANKINGS)}")

    def perturb(self, model, x, y, threat, targets, generator):
        p = self.params
        ranked = rank_targets(model, x, y, threat.norm, p["ranking"])
        if ranked.shape[1] + 1 < self.min_classes:
            raise ValueError(f"attack 'apgd-mt' needs a model with at least {self.min_classes} classes")
        out = x.clone()
        todo = torch.arange(x.shape[0], device=x.device)
        for r in range(min(int(p["n_target_classes"]), ranked.shape[1])):
            for _ in range(int(p["n_restarts"])):
                if todo.numel() == 0:
                    return out
                adv, hit = apgd_run(
                    model,
                    x[todo],
                    y[todo],
                    threat,
                    "dlr-targeted",
                    int(p["n_iter"]),
                    float(p["rho"]),
                    generator,
                    ranked[todo, r],
                    int(p["eot_iter"]),
                )
                out[todo] = adv
                todo = todo[~hit]
        return out
