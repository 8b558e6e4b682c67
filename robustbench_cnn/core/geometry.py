"""The geometry of a threat model, shared by the attacks and the defenses' inner maximisation.

Projection onto ``{x + delta : ||delta|| <= eps} ∩ [0, 1]``, the steepest-ascent direction of a norm, one projected
ascent step, and random starting points in the ball. The evaluation attacks (``attacks``) and the training-time
perturbations (``defenses``) call these same functions, so a PGD step or a random start means the same thing in
both. Randomness comes only from the ``torch.Generator`` passed in.

Every function takes a batch ``N x C x H x W`` in [0, 1], works on whatever device the batch lives on, and never
modifies its inputs in place unless it says so (:func:`ascent_step` consumes ``grad``).
"""

from __future__ import annotations

import torch

from robustbench_cnn.core.types import Norm, ThreatModel

#: Guards divisions by a norm that may be zero.
TINY = 1e-12
#: Kinds of random start: uniform in the ball, ``x + sigma * N(0, 1)``, or the clean point itself.
STARTS = ("uniform", "normal", "none")


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values ``v[N]`` shaped to broadcast against ``like[N, ...]``."""
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

    Soft-thresholding with the threshold found by sorting (Duchi, Shalev-Shwartz, Singer & Chandra, ICML 2008); it
    only shrinks coordinates toward 0, so a point inside [0, 1] stays inside.
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
    """Project ``x_adv`` onto ``{x + delta : ||delta||_norm <= eps} ∩ [0, 1]`` (per sample); detached.

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
        factor = torch.where(norms > eps, eps / (norms + TINY), torch.ones_like(norms))
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


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm`` for the gradient ``grad``: ``sign(g)`` for linf,
    ``g / ||g||_2`` for l2, ``g / ||g||_1`` for l1 (per sample); ``ValueError`` for l0."""
    if norm is Norm.LINF:
        return grad.sign()
    if norm is Norm.L2:
        return grad / per_sample(grad.flatten(1).norm(p=2, dim=1).clamp_min(TINY), grad)
    if norm is Norm.L1:
        return grad / per_sample(grad.flatten(1).abs().sum(dim=1).clamp_min(TINY), grad)
    raise ValueError(f"no gradient step defined for norm {norm.value}")


def ascent_step(
    x_adv: torch.Tensor,
    grad: torch.Tensor,
    alpha: float,
    x: torch.Tensor,
    threat: ThreatModel,
    box: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """One projected steepest-ascent step of size ``alpha``: ``project(x_adv + alpha * direction(grad))``.

    ``box`` is ``threat.linf_box(x)`` (computed once per run by the caller): for linf the step is then
    ``clamp(x_adv + alpha * sign(grad), *box)``, one fused add and one clamp, which is the projection onto the ball
    and [0, 1]; it overwrites ``grad`` with its sign. Without a box (l2, l1) it is :func:`ascent_direction` followed
    by :func:`project`. ``x_adv`` and ``grad`` are plain tensors (no graph), and so is the result.
    """
    if box is not None:
        return torch.add(x_adv, grad.sign_(), alpha=alpha).clamp_(box[0], box[1])
    return project(x_adv + alpha * ascent_direction(grad, threat.norm), x, threat)


# ------------------------------------------------------------------------------------------ random draws
def rand_uniform(shape: torch.Size | tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) float32 of ``shape`` drawn from ``generator`` (on its own device), moved to ``like``'s device and
    dtype."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=like.device, dtype=like.dtype
    )


def rand_normal(shape: torch.Size | tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) float32 of ``shape`` drawn from ``generator``, moved to ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        device=like.device, dtype=like.dtype
    )


def randint(
    low: int, high: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Integers in [low, high) drawn from ``generator``, moved to ``device``."""
    return torch.randint(low, high, shape, generator=generator, device=generator.device).to(device)


def random_start(
    x: torch.Tensor,
    threat: ThreatModel,
    generator: torch.Generator,
    start: str = "uniform",
    *,
    sigma: float = 0.001,
    clip: bool = True,
    in_place: bool = False,
) -> torch.Tensor:
    """A random first iterate around ``x``, clipped to [0, 1] unless ``clip`` is False.

    - ``uniform`` (default): uniform in the ``threat`` ball (Madry et al. 2018; Wong et al. 2020): linf
      ``x + eps * (2U - 1)`` per coordinate; l2 a Gaussian direction with radius ``eps * U^(1/d)``; l1 a Laplace
      direction normalised, radius ``eps * U^(1/d)``;
    - ``normal``: ``x + sigma * N(0, 1)`` (TRADES and MART's reference code; ``sigma`` default 0.001);
    - ``none``: a copy of ``x``.

    Draws are float32 from ``generator`` on its own device (so a CPU generator gives the same start on any
    device). ``clip=False`` returns ``x + delta`` as drawn, possibly outside [0, 1] (Wong et al.'s FGSM-RS takes its
    first gradient there); the point is always inside the ball. l0 has no uniform start (``ValueError``).

    ``in_place=True`` draws the linf cube with torch's ``uniform_(-eps, eps)`` straight into a tensor like ``x``
    when the generator lives on ``x``'s device (one kernel, no temporary; the training recipes' draw). It is the
    same distribution from the same generator stream, but some CPU kernels (``ATEN_CPU_CAPABILITY=default``) round
    ``U * 2 eps - eps`` differently from ``(2U - 1) * eps`` in the last bit, so attacks and defenses each keep their
    own draw and their results reproduce exactly.
    """
    if start == "none":
        return x.clone()
    if start == "normal":
        noisy = x + sigma * rand_normal(x.shape, generator, x)
        return noisy.clamp(0.0, 1.0) if clip else noisy
    if start != "uniform":
        raise ValueError(f"invalid start {start!r}: use one of {', '.join(STARTS)}")
    eps = float(threat.eps)
    n, d = x.shape[0], x[0].numel()
    if threat.norm is Norm.LINF:
        if in_place and generator.device == x.device:
            delta = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        else:
            delta = (2 * rand_uniform(x.shape, generator, x) - 1) * eps
    elif threat.norm is Norm.L2:
        # uniform in the ball: direction ~ N(0, I) normalised, radius ~ U^(1/d)
        g = rand_normal((n, d), generator, x)
        r = rand_uniform((n, 1), generator, x) ** (1.0 / d)
        delta = (g / g.norm(dim=1, keepdim=True).clamp_min(TINY) * r * eps).view_as(x)
    elif threat.norm is Norm.L1:
        # uniform in the L1 ball: Laplace direction normalised, radius ~ U^(1/d)
        e = -torch.log(rand_uniform((n, d), generator, x).clamp_min(1e-20))
        sign = rand_uniform((n, d), generator, x).lt(0.5).to(x.dtype) * 2 - 1
        r = rand_uniform((n, 1), generator, x) ** (1.0 / d)
        delta = (sign * e / e.sum(dim=1, keepdim=True) * r * eps).view_as(x)
    else:
        raise ValueError(f"no random start defined for norm {threat.norm.value}")
    return (x + delta).clamp(0.0, 1.0) if clip else x + delta
