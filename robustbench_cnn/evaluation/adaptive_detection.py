"""The adaptive attack on a classifier guarded by a detector: fool the classifier and evade the detector together.

Carlini & Wagner ("Adversarial Examples Are Not Easily Detected: Bypassing Ten Detection Methods", AISec 2017)
attack the joint model ``G`` whose ``K + 1``-th logit is the detector's; Tramer, Carlini, Brendel & Madry ("On
Adaptive Attacks to Adversarial Example Defenses", NeurIPS 2020) recommend exactly this kind of joint objective.
Here the detector logit is ``z_det = max_j z_j + (score - threshold) / scale`` (``scale``: the spread of the clean
calibration scores), so the joint model predicts "adversarial" exactly when the detector flags the input. The
attack ascends the margin

    ``max_{j != y, j < K} z_j - max(z_y, z_det)``

with PGD (Madry et al. 2018: random start in the ball, ``steps`` signed (linf) or normalised (l2) steps of
``2.5 * eps / steps``, projection onto the ball and [0, 1] from :mod:`robustbench_cnn.core.geometry`). It is
positive exactly when the point is misclassified and not flagged; a point keeps the first iterate where that
holds. Non-differentiable squeezers pass gradients through BPDA (the detector's own ``logits_and_score``);
a ``randomized`` detector's gradient is averaged over ``eot_samples`` draws (EOT, Athalye et al. 2018).

``loss="consensus"`` is the attack for detectors that compare views of the input (``has_views``, e.g. feature
squeezing), in two stages per restart (He, Wei, Chen, Carlini & Song, "Adversarial Example Defenses: Ensembles of
Weak Defenses are not Strong", WOOT 2017, attacked feature squeezing by fooling every squeezed view together):
the first half of the steps ascends ``min_v (max_{j != y} z_v[j] - z_v[y])`` over the views ``v`` (the input and
each squeezed input, BPDA), so that every view is misclassified (the hardest view, e.g. the 1-bit one, leads);
then ``t`` is the most likely wrong class of the hardest view (smallest margin), and the second half ascends
``min_v (z_v[t] - max_{j != t} z_v[j])``, so that every view predicts ``t`` and their outputs agree. Success is
judged as for the joint margin, on the detector's own score.
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_cnn.core.geometry import ascent_step, random_start
from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.detectors import Detector

__all__ = ["LOSSES", "adaptive_attack", "consensus_margin", "joint_margin", "untargeted_margin"]

#: The adaptive objectives (see the module docstring).
LOSSES = ("joint", "consensus")

#: PGD step relative to eps (Madry et al.'s ``2.5 * eps / steps``).
STEP_TRAVEL = 2.5


def joint_margin(
    logits: torch.Tensor, score: torch.Tensor, y: torch.Tensor, threshold: float, scale: float
) -> torch.Tensor:
    """Per-sample ``max_{j != y} z_j - max(z_y, z_det)`` with ``z_det = max_j z_j + (score - threshold) / scale``:
    > 0 iff the point is misclassified and not flagged (the attacker's goal)."""
    z = logits.float()
    z_det = z.amax(dim=1) + (score.float() - threshold) / scale
    z_y = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return others - torch.maximum(z_y, z_det)


def untargeted_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ``max_{j != y} z_j - z_y``: > 0 iff misclassified."""
    z = logits.float()
    return z.scatter(1, y[:, None], float("-inf")).amax(dim=1) - z.gather(1, y[:, None]).squeeze(1)


def consensus_margin(views: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``min_v (z_v[t] - max_{j != t} z_v[j])`` over the views' logits: > 0 iff every view predicts
    ``target``."""
    margins = []
    for z in views:
        z = z.float()
        z_t = z.gather(1, target[:, None]).squeeze(1)
        margins.append(z_t - z.scatter(1, target[:, None], float("-inf")).amax(dim=1))
    return torch.stack(margins).amin(dim=0)


def _attack_batch(
    model: nn.Module,
    detector: Detector,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int,
    restarts: int,
    eot_samples: int,
    generator: torch.Generator,
    loss: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    threshold, scale = detector.require_threshold(), detector.scale
    alpha = STEP_TRAVEL * float(threat.eps) / steps
    box = threat.linf_box(x)
    best = x.clone()
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    switch = steps // 2 if loss == "consensus" else -1  # the step where the consensus attack picks its target
    for _ in range(restarts):
        x_adv = random_start(x, threat, generator)
        target: torch.Tensor | None = None
        for step in range(steps + 1):
            x_adv.requires_grad_(True)
            grad = torch.zeros_like(x)
            if step == switch:
                with torch.no_grad():  # the hardest view (smallest margin) decides the class all must agree on
                    views = detector.view_logits(model, x_adv.detach())
                    hardest = torch.stack([untargeted_margin(z, y) for z in views]).argmin(dim=0)
                    chosen = torch.stack(views)[hardest, torch.arange(len(y), device=y.device)].float()
                    target = chosen.scatter(1, y[:, None], float("-inf")).argmax(dim=1)
            for _ in range(eot_samples if detector.randomized else 1):
                if loss == "joint":
                    logits, score = detector.logits_and_score(model, x_adv)
                    margin = objective = joint_margin(logits, score, y, threshold, scale)
                else:
                    with torch.no_grad():
                        logits, score = detector.logits_and_score(model, x_adv.detach())
                        margin = joint_margin(logits, score, y, threshold, scale)
                    if step == steps:
                        break
                    views = detector.view_logits(model, x_adv)
                    objective = (
                        consensus_margin(views, target)
                        if target is not None
                        else torch.stack([untargeted_margin(z, y) for z in views]).amin(dim=0)
                    )
                if step == steps:
                    break
                grad += torch.autograd.grad(objective.sum(), x_adv)[0]
            won = (margin.detach() > 0) & ~done
            best[won] = x_adv.detach()[won]
            done |= won
            if step == steps or bool(done.all()):
                break
            grad[done] = 0.0
            x_adv = ascent_step(x_adv.detach(), grad, alpha, x, threat, box)
        last = x_adv.detach()
        best[~done] = last[~done]
        if bool(done.all()):
            break
    return best, done


def adaptive_attack(
    model: nn.Module,
    detector: Detector,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 100,
    restarts: int = 1,
    eot_samples: int = 20,
    loss: str = "joint",
    seed: int = 0,
    batch_size: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive PGD on the joint margin (see the module docstring) against the calibrated ``detector``.

    Args:
        model: the classifier (logits N x K); put in eval mode with frozen parameters, restored on exit.
        detector: a fitted and calibrated detector.
        x, y: points (N x C x H x W in [0, 1]) and labels; attack them all.
        threat: an linf or l2 ball.
        steps: PGD steps per restart (default 100); restarts: runs from fresh uniform random starts (default 1);
        eot_samples: gradient samples per step for a ``randomized`` detector (default 20; 1 otherwise).
        loss: ``joint`` (default) or ``consensus`` (``has_views`` detectors only); see the module docstring.
        seed: seeds the random starts; batch_size: points per batch (default 500).

    Returns ``(x_adv, success)``: per point the first iterate that is misclassified and not flagged, else the
    last iterate of the last restart (inside the ball and [0, 1]); ``success[i]`` says which.
    """
    if threat.norm not in (Norm.LINF, Norm.L2):
        raise ValueError(f"the adaptive detection attack supports linf and l2, not {threat.norm.value}")
    if loss not in LOSSES:
        raise ValueError(f"invalid adaptive loss {loss!r}: use one of {', '.join(LOSSES)}")
    if loss == "consensus" and not detector.has_views:
        raise ValueError(f"the consensus loss needs a detector with views; {detector.name!r} has none")
    if steps < 1 or restarts < 1 or eot_samples < 1:
        raise ValueError("steps, restarts and eot_samples must be >= 1")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    outs, wins = [], []
    with eval_mode(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            adv, won = _attack_batch(model, detector, xb, yb, threat, steps, restarts, eot_samples, generator, loss)
            outs.append(adv)
            wins.append(won)
    if not outs:
        return x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device)
    return torch.cat(outs), torch.cat(wins)
