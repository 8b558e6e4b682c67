"""The inner maximisation shared by the training recipes: one PGD-style loop with a pluggable objective.

Training-time perturbations are a loop of their own, separate from the evaluation attacks in ``attacks``: they
run on every point of a batch (also the misclassified ones), in whatever train/eval mode the recipe's
paper used, and under the loop's mixed precision. Their geometry is the attacks' own: projection, step direction
and random start come from :mod:`robustbench_cnn.core.geometry`. Every recipe and the overfitting guard use
:func:`perturb`; nothing here touches parameter gradients (``torch.autograd.grad`` w.r.t. the input only), so on
the CPU the first convolution's input gradient takes the faster kernel of :mod:`core.input_gradients`, the parameters
read as constants during the inner maximisation.

All tensors are batches ``N x C x H x W`` in [0, 1]; randomness comes from a ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.geometry import ascent_step, per_sample, project, random_start
from robustbench_cnn.core.input_gradients import fast_input_gradients
from robustbench_cnn.core.model_utils import model_mode
from robustbench_cnn.core.types import Norm, ThreatModel

#: Per-sample objective to *ascend*: logits of the perturbed batch (N x K) -> losses (N,).
Objective = Callable[[torch.Tensor], torch.Tensor]
AutocastFactory = Callable[[], contextlib.AbstractContextManager]
SUPPORTED_NORMS = (Norm.LINF, Norm.L2)


def check_norm(threat: ThreatModel, who: str) -> None:
    """Training recipes support linf and l2 balls; anything else is a ``ValueError`` naming ``who``."""
    if threat.norm not in SUPPORTED_NORMS:
        raise ValueError(f"defense {who!r} does not support norm {threat.norm.value}: use linf or l2")


def ce_objective(y: torch.Tensor) -> Objective:
    """Cross-entropy with the true labels (PGD-AT, FGSM-RS, MART)."""
    return lambda logits: F.cross_entropy(logits.float(), y, reduction="none")


def kl_divergence(logits_ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(softmax(logits_ref) || softmax(logits))`` (N,), differentiable in both."""
    p_ref = F.softmax(logits_ref.float(), dim=1)
    return F.kl_div(F.log_softmax(logits.float(), dim=1), p_ref, reduction="none").sum(dim=1)


def kl_objective(clean_logits: torch.Tensor) -> Objective:
    """``KL(f(x) || f(x'))`` per sample, the TRADES inner objective (``clean_logits`` are held fixed)."""
    ref = clean_logits.detach()
    return lambda logits: kl_divergence(ref, logits)


def _no_autocast() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    threat: ThreatModel,
    objective: Objective,
    *,
    steps: int,
    alpha: float,
    generator: torch.Generator,
    start: str | torch.Tensor = "uniform",
    sigma: float = 0.001,
    autocast: AutocastFactory = _no_autocast,
    y: torch.Tensor | None = None,
    clip_start: bool = True,
    start_threat: ThreatModel | None = None,
) -> torch.Tensor:
    """Maximise ``objective`` over the ``threat`` ball around ``x`` by ``steps`` projected ascent steps.

    Args:
        model: the network (its train/eval mode is left as it is: the caller picks it).
        x: clean batch N x C x H x W in [0, 1].
        threat: the ball; linf (sign steps) or l2 (normalised steps).
        objective: logits -> per-sample loss to ascend (see :func:`ce_objective`, :func:`kl_objective`).
        steps: number of gradient steps (1 with ``alpha = 1.25 eps`` is FGSM-RS).
        alpha: step size in the threat's norm.
        generator: source of the random start.
        start: ``uniform``, ``normal`` (``sigma * N(0, 1)``), ``none``, or a tensor like ``x``: the first iterate
            itself (projected onto the ball and [0, 1]; ATTA continues each point from its kept perturbation).
        autocast: the loop's mixed-precision context factory (``ctx.autocast``).
        y: labels; when given, a point keeps the first iterate that the model misclassifies
            (evaluation semantics: a point counts as broken if any iterate broke it).
        clip_start: project the random start onto the ball and [0, 1] before the first gradient (default).
            ``False`` takes the first gradient at ``x + delta`` as drawn, possibly outside [0, 1], as Wong et
            al.'s FGSM-RS (Algorithm 3 and their MNIST code); every later iterate and the result are projected.
        start_threat: the ball of the random start when it differs from ``threat`` (N-FGSM draws its noise in
            a ball of ``2 eps`` and projects onto the ball of ``3 eps`` that holds every point it can reach).

    Returns the detached perturbed batch, inside the ball and [0, 1].
    """
    if y is not None and not clip_start:
        raise ValueError("perturb: an unclipped start (clip_start=False) cannot keep misclassified iterates (y)")
    x = x.detach()
    given = isinstance(start, torch.Tensor)
    if given:
        x_adv = start.detach()  # projected below (a new tensor), as a clipped random start is
    else:
        x_adv = random_start(x, start_threat or threat, generator, start, sigma=sigma, clip=clip_start, in_place=True)
    box = threat.linf_box(x)  # linf: the ball-and-box bounds once; each projection is then one clamp
    if clip_start or given or steps < 1:
        x_adv = torch.clamp(x_adv, *box) if box is not None else project(x_adv, x, threat)
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device) if y is not None else None
    best = x_adv.clone() if y is not None else None
    with fast_input_gradients(model, constant_parameters=True):  # the layers are patched once for all the steps
        for _ in range(int(steps)):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                with autocast():
                    logits = model(x_adv)
                (grad,) = torch.autograd.grad(objective(logits).sum(), [x_adv])
            x_adv = x_adv.detach()
            if found is not None:
                hit = (logits.detach().argmax(1) != y) & ~found
                best[hit], found[hit] = x_adv[hit], True  # type: ignore[index]
            x_adv = ascent_step(x_adv, grad, alpha, x, threat, box)
    if found is not None:
        return torch.where(per_sample(found, x_adv), best, x_adv)  # type: ignore[arg-type]
    return x_adv


def default_pgd_alpha(threat: ThreatModel, steps: int) -> float:
    """Madry et al.'s rule of thumb: a step of ``2.5 * eps / steps`` (reaches the boundary from anywhere)."""
    return 2.5 * threat.eps / max(1, int(steps))


@torch.no_grad()
def pgd_robust(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    batch_size: int = 500,
    autocast: AutocastFactory = _no_autocast,
    start: str = "uniform",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point ``(clean correct, robust to PGD)`` as boolean tensors on the CPU (see :func:`pgd_accuracy`).

    ``start="none"`` with ``steps=1`` and ``alpha=eps`` is FGSM without a random start, the monitor's cheap
    masking probe: a single step that breaks points the iterative attack could not is a sign of masked gradients.
    """
    if len(y) == 0:
        raise ValueError("no images to evaluate")
    device = next(model.parameters()).device
    alpha = default_pgd_alpha(threat, steps) if alpha is None else float(alpha)
    generator = torch.Generator().manual_seed(int(seed))
    clean_parts, robust_parts = [], []
    with model_mode(model, False):
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            with autocast():
                correct = model(xb).argmax(1) == yb
            if threat.eps > 0 and steps > 0:
                x_adv = perturb(
                    model,
                    xb,
                    threat,
                    ce_objective(yb),
                    steps=steps,
                    alpha=alpha,
                    generator=generator,
                    autocast=autocast,
                    y=yb,
                    start=start,
                )
                with autocast():
                    still = correct & (model(x_adv).argmax(1) == yb)
            else:
                still = correct
            clean_parts.append(correct.cpu())
            robust_parts.append(still.cpu())
    return torch.cat(clean_parts), torch.cat(robust_parts)


def pgd_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 10,
    alpha: float | None = None,
    seed: int = 0,
    batch_size: int = 500,
    autocast: AutocastFactory = _no_autocast,
) -> tuple[float, float]:
    """``(clean accuracy, PGD robust accuracy)`` of ``model`` on ``x, y`` (a quick training-time monitor).

    PGD with cross-entropy, a uniform random start, ``steps`` steps of ``alpha`` (default
    ``2.5 * eps / steps``), in eval mode (restored afterwards); a point is robust if it is classified
    correctly clean and at every iterate. This is a monitor for the trade-off tables and the
    overfitting guard, not a substitute for the evaluation cascades (``evaluation``).
    """
    clean, robust = pgd_robust(
        model, x, y, threat, steps=steps, alpha=alpha, seed=seed, batch_size=batch_size, autocast=autocast
    )
    return float(clean.float().mean()), float(robust.float().mean())
