"""Stateless tensor helpers shared by the attacks: projection, steps, random starts, losses.

Every function works on a batch ``N x C x H x W`` in [0, 1], on whatever device the batch lives,
and never modifies its inputs in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from robustbench_cnn.core.types import Norm, ThreatModel

_TINY = 1e-12


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars ``v[N]`` shaped to broadcast against ``like[N, ...]``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def lp_norm(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample norm of ``delta`` (N x ...) in ``norm``, differentiable where defined."""
    flat = delta.flatten(1)
    if norm is Norm.LINF:
        return flat.abs().amax(dim=1)
    if norm is Norm.L2:
        return flat.norm(p=2, dim=1)
    if norm is Norm.L1:
        return flat.abs().sum(dim=1)
    return (flat != 0).sum(dim=1).to(delta.dtype)


def _project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each row of ``delta`` (N x D) onto the L1 ball of radius ``eps``.

    Soft-thresholding with the threshold found by sorting (Duchi et al., 2008); it only shrinks
    coordinates toward 0, so a point inside [0, 1] stays inside.
    """
    abs_d = delta.abs()
    outside = abs_d.sum(dim=1) > eps
    if not outside.any():
        return delta
    sorted_abs, _ = abs_d[outside].sort(dim=1, descending=True)
    cumsum = sorted_abs.cumsum(dim=1) - eps
    ks = torch.arange(1, sorted_abs.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    cond = sorted_abs - cumsum / ks > 0
    rho = cond.to(torch.int64).cumsum(dim=1).argmax(dim=1)  # last index where cond holds
    theta = cumsum.gather(1, rho[:, None]) / (rho[:, None] + 1).to(delta.dtype)
    out = delta.clone()
    out[outside] = delta[outside].sign() * (abs_d[outside] - theta).clamp_min(0)
    return out


def project(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Project ``x_adv`` onto ``{x + delta : ||delta||_norm <= eps} ∩ [0, 1]`` (per sample).

    - linf: clamp ``delta`` to [-eps, eps], then the image to [0, 1] (exact projection);
    - l2: clamp to [0, 1], then shrink ``delta`` radially when ``||delta||_2 > eps``;
    - l1: clamp to [0, 1], then the exact L1-ball projection (soft-thresholding);
    - l0: clamp to [0, 1], then keep the ``floor(eps)`` largest ``|delta|`` coordinates.

    For l2/l1/l0 the second step only moves coordinates toward ``x``, so the box is kept.
    """
    eps = float(threat.eps)
    x_adv = x_adv.detach()
    if threat.norm is Norm.LINF:
        delta = (x_adv - x).clamp(-eps, eps)
        return (x + delta).clamp(0.0, 1.0)
    delta = (x_adv.clamp(0.0, 1.0) - x).flatten(1)
    if threat.norm is Norm.L2:
        norms = delta.norm(p=2, dim=1, keepdim=True)
        factor = torch.where(norms > eps, eps / (norms + _TINY), torch.ones_like(norms))
        delta = delta * factor
    elif threat.norm is Norm.L1:
        delta = _project_l1(delta, eps)
    else:  # L0: number of changed coordinates
        k = int(eps)
        if k < delta.shape[1]:
            if k <= 0:
                delta = torch.zeros_like(delta)
            else:
                kth = delta.abs().topk(k, dim=1).indices
                keep = torch.zeros_like(delta, dtype=torch.bool).scatter_(1, kth, True)
                delta = delta * keep
    return (x + delta.view_as(x)).clamp(0.0, 1.0)


def normalize_step(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm``: sign for linf, ``g / ||g||_2`` for l2, ..."""
    if norm is Norm.LINF:
        return grad.sign()
    if norm is Norm.L2:
        return grad / _view(grad.flatten(1).norm(p=2, dim=1).clamp_min(_TINY), grad)
    if norm is Norm.L1:
        return grad / _view(grad.flatten(1).abs().sum(dim=1).clamp_min(_TINY), grad)
    raise ValueError(f"no gradient step defined for norm {norm.value}")


def rand_uniform(shape: torch.Size | tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn from ``generator`` (on its own device), moved to ``like``."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=like.device, dtype=like.dtype
    )


def rand_normal(shape: torch.Size | tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) of ``shape`` drawn from ``generator``, moved to ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=like.device, dtype=like.dtype
    )


def randint(
    low: int, high: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Integers in [low, high) drawn from ``generator``, moved to ``device``."""
    return torch.randint(low, high, shape, generator=generator, device=generator.device).to(device)


def random_start(x: torch.Tensor, threat: ThreatModel, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random point of the eps ball around ``x`` (linf: cube; l2/l1: ball), clipped to [0, 1]."""
    eps = float(threat.eps)
    n, d = x.shape[0], x[0].numel()
    if threat.norm is Norm.LINF:
        delta = (2 * rand_uniform(x.shape, generator, x) - 1) * eps
    elif threat.norm is Norm.L2:
        # uniform in the ball: direction ~ N(0, I) normalised, radius ~ U^(1/d)
        g = rand_normal((n, d), generator, x)
        r = rand_uniform((n, 1), generator, x) ** (1.0 / d)
        delta = (g / g.norm(dim=1, keepdim=True).clamp_min(_TINY) * r * eps).view_as(x)
    elif threat.norm is Norm.L1:
        # uniform in the L1 ball: Laplace direction normalised, radius ~ U^(1/d)
        e = -torch.log(rand_uniform((n, d), generator, x).clamp_min(1e-20))
        sign = rand_uniform((n, d), generator, x).lt(0.5).to(x.dtype) * 2 - 1
        r = rand_uniform((n, 1), generator, x) ** (1.0 / d)
        delta = (sign * e / e.sum(dim=1, keepdim=True) * r * eps).view_as(x)
    else:
        raise ValueError(f"no random start defined for norm {threat.norm.value}")
    return (x + delta).clamp(0.0, 1.0)


def jittered_start(previous: torch.Tensor, norm: Norm, radius: float, seed: int) -> torch.Tensor:
    """A warm start along a growing ball: each point's last iterate at the previous epsilon plus a uniform random
    step in the ball of the epsilon increment ``radius`` (the attack then projects it onto the new ball), so the
    run continues the ascent without restarting from exactly the same point. Seeded by ``seed``."""
    if radius <= 0:
        return previous
    generator = torch.Generator(device=previous.device).manual_seed(seed)
    return random_start(previous, ThreatModel(norm, radius), generator)


# ----------------------------------------------------------------------------------------- losses
def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (N,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample CW margin ``max_{j != y} z_j - z_y`` (N,): > 0 iff misclassified."""
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - z_y


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample Difference-of-Logits-Ratio loss (Croce & Hein, 2020), shift and scale invariant.

    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``; needs at least 3 classes.
    """
    if logits.shape[1] < 3:
        raise ValueError("the DLR loss needs at least 3 classes")
    z_sorted = logits.sort(dim=1).values
    return margin_loss(logits, labels) / (z_sorted[:, -1] - z_sorted[:, -3] + _TINY)


LOSSES = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}


def get_loss(name: str):
    """A per-sample loss by name (``ce``, ``margin``, ``dlr``); higher means closer to misclassified."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"invalid loss {name!r}: use one of {', '.join(LOSSES)}") from None


def loss_and_grad(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward: ``(logits, d objective / d x)``.

    The objective is ``loss(logits, labels)`` summed over the batch (ascended), or its negative
    when ``targeted`` (``labels`` are then the targets, and the attack descends the loss).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        value = get_loss(loss)(logits, labels).sum()
        if targeted:
            value = -value
        (grad,) = torch.autograd.grad(value, [x])
    return logits.detach(), grad.detach()


def eot_loss_and_grad(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`loss_and_grad` averaged over ``samples`` passes (expectation over transformation, Athalye et al.
    2018): for randomized models, the mean gradient estimates the gradient of the expected loss. Returns the
    mean logits and the mean gradient; ``samples == 1`` is exactly :func:`loss_and_grad`."""
    logits, grad = loss_and_grad(model, x, labels, loss, targeted)
    for _ in range(int(samples) - 1):
        more_logits, more_grad = loss_and_grad(model, x, labels, loss, targeted)
        logits, grad = logits + more_logits, grad + more_grad
    return (logits / samples, grad / samples) if samples > 1 else (logits, grad)


@torch.no_grad()
def batched_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    """Logits of ``x`` (N x K) in mini-batches, without building a graph; None when ``x`` is empty.
    ``ValueError`` when the model does not return N x K logits."""
    if not x.shape[0]:
        return None
    out = []
    for xb in x.split(batch_size):
        logits = model(xb)
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits N x K, got shape {tuple(logits.shape)}")
        out.append(logits)
    return torch.cat(out)


def is_adversarial(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-sample success from logits: ``argmax != y`` (untargeted) or ``argmax == target``."""
    pred = logits.argmax(dim=1)
    return pred == labels if targeted else pred != labels


# ------------------------------------------------------------------------------- RNG and model state
def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (a CPU one where unsupported)."""
    try:
        gen = torch.Generator(device=device)
    except (RuntimeError, TypeError):
        gen = torch.Generator()
    return gen.manual_seed(int(seed))


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run library code that draws from torch's *global* RNG with ``seed``, then restore that RNG.

    Used around foolbox and AutoAttack, which seed or draw from the global generator.
    """
    devices: list[int] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # torch.manual_seed reseeds every CUDA device, also when the attack itself runs on the CPU
        devices = list(range(torch.cuda.device_count()))
    kwargs = {"device_type": device.type} if device.type not in ("cpu", "cuda") else {}
    with torch.random.fork_rng(devices=devices, **kwargs):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put every submodule in eval mode and freeze parameters; restore both on exit (also on errors).

    Each module's own ``training`` flag and each parameter's ``requires_grad`` are restored, so a
    model with a mixed state comes back exactly as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)
