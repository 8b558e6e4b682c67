"""Randomized smoothing: certify a lower bound, attack an upper bound, on the same points.

The smoothed classifier of a base classifier ``f`` at noise level ``sigma`` is
``g(x) = argmax_c P(f(x + sigma * e) = c)``, ``e ~ N(0, I)`` (Cohen, Rosenfeld, Kolter, "Certified Adversarial
Robustness via Randomized Smoothing", ICML 2019, https://arxiv.org/abs/1902.02918). Its prediction is robust in
the L2 ball of radius ``sigma * Phi^-1(pA)`` around ``x``, where ``pA`` is the probability of the top class.

- :func:`certify` is Cohen et al.'s CERTIFY: ``n0`` noise samples select the top class, ``n`` fresh samples give a
  one-sided Clopper-Pearson lower bound ``pA_lower`` on its probability at level ``1 - alpha``; if
  ``pA_lower > 1/2`` the prediction is that class with radius ``sigma * Phi^-1(pA_lower)``, otherwise it abstains.
  The certificate is wrong with probability at most ``alpha``.
- :func:`predict` is their PREDICT: ``n`` samples, the top two counts ``nA, nB``; the class is returned when a
  two-sided binomial test of ``nA`` out of ``nA + nB`` at ``p = 1/2`` has p-value ``<= alpha``, else it abstains.
  It returns a class other than ``g(x)`` with probability at most ``alpha``.
- :func:`smoothadv` is SmoothAdv's PGD (Salman, Yang, Li, Zhang, Zhang, Razenshteyn, Bubeck, "Provably Robust Deep
  Learning via Adversarially Trained Smoothed Classifiers", NeurIPS 2019, https://arxiv.org/abs/1906.04584): L2 PGD
  on the cross-entropy of the *soft* smoothed classifier ``E_e[softmax(f(x + sigma * e))]``, whose gradient is
  estimated at every step with ``noise_samples`` fresh noise draws.
- :func:`certify_and_attack` runs both on the same points at a list of radii: certified accuracy at ``r`` (a lower
  bound on the smoothed classifier's robust accuracy, with probability ``1 - alpha`` per point) beside the empirical
  robust accuracy (an upper bound: a point is broken when PREDICT on the attack's point, within ``r``, is wrong or
  abstains), and the consistency check between the two (:data:`INCONSISTENT`).

Noise is sampled in batches on the model's device from seeded ``torch.Generator`` streams, one stream per point and
purpose, so a point's certificate does not depend on the other points or on the batch size. The statistics come
from scipy (``binomtest``, ``norm.ppf``); nothing is hand-rolled. All inputs are in [0, 1]; the noisy copies are not
clipped (the smoothed classifier is defined on unclipped Gaussian noise, as in Cohen et al.'s code).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binom, binomtest, norm
from torch import nn

from robustbench_cnn.core.devices import resolve_device
from robustbench_cnn.core.statistics import proportion_ci
from robustbench_cnn.evaluation.flags import Flag

#: The class index of an abstention (Cohen et al.'s ABSTAIN).
ABSTAIN: Final = -1
#: Flag code: points certified at radius ``r`` that the attack broke within ``r`` with a confident wrong class.
INCONSISTENT: Final = "certified-broken"
#: Flag code: a requested radius above the largest radius ``n`` samples can certify (certified accuracy 0 there).
ABOVE_CAP: Final = "radius-above-cap"

# One noise stream per (seed, purpose, radius index, point): independent draws for each procedure.
_CERTIFY, _PREDICT, _ATTACK = 0, 1, 2
_TINY = 1e-12

#: ``attack(model, x, y, radius, seed) -> x_adv``: an L2 attack on the smoothed classifier (see :func:`smoothadv`).
SmoothAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, int], torch.Tensor]


# --- statistics (scipy) -------------------------------------------------------------------------------


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound on a binomial proportion from ``k`` successes in ``n``
    trials: the lower end of the two-sided exact interval at level ``1 - 2 * alpha`` (Cohen et al.'s
    ``LowerConfBound``)."""
    return float(binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low)


def certified_radius(pa_lower: float, sigma: float) -> float:
    """``sigma * Phi^-1(pA_lower)``: the L2 radius certified by a lower bound ``pA_lower > 1/2`` (Cohen et al.,
    Theorem 1 with ``pB = 1 - pA``)."""
    return float(sigma * norm.ppf(pa_lower))


def radius_cap(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with ``n`` samples: every sample on the top class, ``pA_lower =
    alpha ** (1 / n)`` (about ``3.2 * sigma`` at ``n = 10,000``, ``alpha = 0.001``)."""
    return certified_radius(lower_confidence_bound(n, n, alpha), sigma)


def allowed_inconsistencies(m: int, alpha: float) -> int:
    """How many of ``m`` certified points may be broken by chance before :data:`INCONSISTENT` fires.

    Under correct code a certified point is contradicted (PREDICT returns another class at a point inside its
    radius) only when its certificate is wrong (probability <= ``alpha``) or PREDICT errs (<= ``alpha``): at most
    ``2 * alpha`` per point, independently across points. The allowance is the ``1 - alpha`` quantile of
    Binomial(``m``, ``2 * alpha``), so the flag fires falsely with probability <= ``alpha``; ``m = 500``,
    ``alpha = 0.001`` allows 5.
    """
    if m <= 0:
        return 0
    return int(binom.ppf(1 - alpha, m, min(1.0, 2 * alpha)))


# --- sampling -----------------------------------------------------------------------------------------


def stream_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for the stream ``keys`` under ``seed`` (numpy's ``SeedSequence``: well mixed, reproducible).

    The streams: CERTIFY of point ``i`` draws its ``n0`` then its ``n`` samples from ``(seed, 0, i)``; PREDICT's
    call ``stream`` on point ``i`` from ``(seed, 1, stream, i)``; :func:`certify_and_attack` gives the attack at
    radius index ``j`` the seed ``stream_seed(seed, j)``, from which :func:`smoothadv` draws ``(that, 2, 0)``.
    """
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


def _generator(device: torch.device, seed: int, *keys: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, *keys))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a module without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def sample_counts(
    model: nn.Module,
    x: torch.Tensor,
    num: int,
    sigma: float,
    *,
    generator: torch.Generator,
    batch_size: int = 1000,
    num_classes: int | None = None,
) -> np.ndarray:
    """How often the base classifier predicts each class on ``num`` noisy copies ``x + sigma * e`` of one image
    ``x`` (C x H x W, on the generator's device), drawn ``batch_size`` at a time; ``int64`` array of length
    ``num_classes`` (default: the model's output width)."""
    counts: torch.Tensor | None = None if num_classes is None else torch.zeros(num_classes, dtype=torch.long)
    remaining = int(num)
    while remaining > 0:
        b = min(batch_size, remaining)
        noise = torch.randn((b, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        logits = model(x.unsqueeze(0) + sigma * noise)
        if counts is None:
            counts = torch.zeros(logits.shape[1], dtype=torch.long)
        counts += torch.bincount(logits.argmax(1).cpu(), minlength=counts.numel())
        remaining -= b
    if counts is None:
        raise ValueError(f"invalid sample count {num}: must be >= 1")
    return counts.numpy()


# --- CERTIFY and PREDICT --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certification:
    """CERTIFY's output per point: ``prediction`` (:data:`ABSTAIN` when ``pA_lower <= 1/2``), ``pa_lower`` (the
    one-sided lower bound on the probability of the class the ``n0`` samples selected) and ``radius`` (``sigma *
    Phi^-1(pA_lower)``; 0.0 when abstaining, Cohen et al.'s convention)."""

    prediction: np.ndarray
    pa_lower: np.ndarray
    radius: np.ndarray

    def correct(self, labels: np.ndarray) -> np.ndarray:
        return self.prediction == np.asarray(labels)

    def certified(self, labels: np.ndarray, r: float) -> np.ndarray:
        """Points predicted correctly with a certified radius ``>= r``."""
        return self.correct(labels) & (self.radius >= r)


def _check(sigma: float, alpha: float | None, **counts: int) -> None:
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"invalid sigma {sigma!r}: must be a number > 0")
    if alpha is not None and not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
        raise ValueError(f"invalid alpha {alpha!r}: must be in (0, 0.5)")
    for name, value in counts.items():
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"invalid {name} {value!r}: must be an integer >= 1")


def _prepare(model: nn.Module, x: torch.Tensor, device: str | torch.device | None) -> tuple[torch.device, torch.Tensor]:
    if x.dim() != 4:
        raise ValueError(f"expected a batch N x C x H x W, got shape {tuple(x.shape)}")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError("inputs must be in [0, 1] (normalization belongs inside the model)")
    dev = model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    return dev, x.to(dev, torch.float32)


def certify(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
) -> Certification:
    """Cohen et al.'s CERTIFY for every image of ``x`` (N x C x H x W in [0, 1]).

    Args:
        model: the base classifier (logits; run in eval mode, mode restored).
        sigma: the noise level of the smoothed classifier (the one the model was trained with).
        n0: samples that select the top class (default 100, as the paper).
        n: samples that estimate its probability (default 10,000; the paper: 100,000).
        alpha: failure probability of each certificate (default 0.001, as the paper).
        seed: the seed of the noise streams (point ``i`` uses its own stream).
        batch_size: noisy copies per forward pass.
        device: where the noise is drawn and the model runs (default: the model's; the model is moved there).
    """
    _check(sigma, alpha, n0=n0, n=n, batch_size=batch_size)
    dev, x = _prepare(model, x, device)
    prediction = np.full(len(x), ABSTAIN, dtype=np.int64)
    pa_lower = np.zeros(len(x), dtype=np.float64)
    radius = np.zeros(len(x), dtype=np.float64)
    with _eval(model):
        for i in range(len(x)):
            g = _generator(dev, seed, _CERTIFY, i)
            selection = sample_counts(model, x[i], n0, sigma, generator=g, batch_size=batch_size)
            top = int(selection.argmax())
            counts = sample_counts(
                model, x[i], n, sigma, generator=g, batch_size=batch_size, num_classes=len(selection)
            )
            pa_lower[i] = lower_confidence_bound(int(counts[top]), n, alpha)
            if pa_lower[i] > 0.5:
                prediction[i] = top
                radius[i] = certified_radius(pa_lower[i], sigma)
    return Certification(prediction, pa_lower, radius)


def predict_counts(counts: np.ndarray, alpha: float) -> int:
    """PREDICT's decision from class counts: the top class when the two-sided binomial test of its count against
    the runner-up's (``p = 1/2``) has p-value ``<= alpha``, else :data:`ABSTAIN`. Ties go to the lower index."""
    counts = np.asarray(counts)
    order = np.argsort(-counts, kind="stable")
    n_a = int(counts[order[0]])
    n_b = int(counts[order[1]]) if len(order) > 1 else 0
    return int(order[0]) if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha else ABSTAIN


def _predict(
    model: nn.Module,
    x: torch.Tensor,
    ids: Sequence[int],
    *,
    sigma: float,
    n: int,
    alpha: float,
    seed: int,
    stream: int,
    batch_size: int,
) -> np.ndarray:
    out = np.full(len(x), ABSTAIN, dtype=np.int64)
    with _eval(model):
        for k, i in enumerate(ids):
            g = _generator(x.device, seed, _PREDICT, stream, int(i))
            out[k] = predict_counts(sample_counts(model, x[k], n, sigma, generator=g, batch_size=batch_size), alpha)
    return out


def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n: int = 10_000,
    alpha: float = 0.001,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    stream: int = 0,
) -> np.ndarray:
    """Cohen et al.'s PREDICT for every image of ``x``: the smoothed classifier's class or :data:`ABSTAIN`.

    ``n`` noise samples per point (default 10,000), ``alpha`` the probability of returning a class other than
    ``g(x)`` (default 0.001); ``stream`` separates the noise of several calls under one ``seed``
    (:func:`certify_and_attack` uses the radius index). Other arguments as :func:`certify`.
    """
    _check(sigma, alpha, n=n, batch_size=batch_size)
    _, x = _prepare(model, x, device)
    return _predict(
        model, x, range(len(x)), sigma=sigma, n=n, alpha=alpha, seed=seed, stream=stream, batch_size=batch_size
    )


# --- SmoothAdv ------------------------------------------------------------------------------------------


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, radius: float) -> torch.Tensor:
    """Onto [0, 1], then onto the L2 ball of ``radius`` around ``x`` by radial shrinking (which stays in the box,
    since the box is convex and holds ``x``)."""
    delta = x_adv.clamp(0.0, 1.0) - x
    norms = delta.flatten(1).norm(p=2, dim=1)
    factor = torch.where(norms > radius, radius / (norms + _TINY), torch.ones_like(norms))
    return (x + delta * factor.view(-1, *([1] * (x.dim() - 1)))).clamp(0.0, 1.0)


def smoothadv(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    radius: float,
    steps: int = 20,
    noise_samples: int = 16,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """SmoothAdv PGD (Salman et al. 2019) against the smoothed classifier at L2 ``radius``; returns ``x_adv``.

    Ascends ``-log((1/m) sum_i softmax(f(x' + sigma * e_i))_y)`` over ``m = noise_samples`` fresh noise draws per
    step (a Monte Carlo estimate of the soft smoothed classifier's cross-entropy gradient, computed in log space),
    from ``x`` itself, ``steps`` steps of size ``2 * radius / steps`` along the L2-normalised gradient (a random
    direction where it is zero), each followed by projection onto [0, 1] and the ball (Salman et al.'s step size
    and projection). Defaults: 20 steps, 16 noise samples. ``x`` in [0, 1]; ``x_adv`` is in the ball and the box.
    Points are attacked ``max(1, batch_size // noise_samples)`` at a time; the model runs in eval mode.
    """
    _check(sigma, None, steps=steps, noise_samples=noise_samples, batch_size=batch_size)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"invalid radius {radius!r}: must be >= 0")
    dev, x = _prepare(model, x, device)
    y = y.to(dev)
    if radius == 0 or not len(x):
        return x.detach().clone()
    g = _generator(dev, seed, _ATTACK, 0)
    m, step = int(noise_samples), 2.0 * radius / steps
    chunk = max(1, batch_size // m)
    out = []
    with _eval(model):
        for start in range(0, len(x), chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            b = len(xb)
            x_adv = xb.clone()
            for _ in range(steps):
                x_adv.requires_grad_(True)
                noise = torch.randn((b, m, *xb.shape[1:]), generator=g, device=dev, dtype=xb.dtype)
                noisy = (x_adv.unsqueeze(1) + sigma * noise).flatten(0, 1)
                log_probs = F.log_softmax(model(noisy).float(), dim=1).view(b, m, -1)
                log_soft = torch.logsumexp(log_probs[torch.arange(b, device=dev), :, yb], dim=1) - math.log(m)
                (grad,) = torch.autograd.grad(-log_soft.sum(), x_adv)
                with torch.no_grad():
                    norms = grad.flatten(1).norm(p=2, dim=1)
                    zero = norms == 0
                    if bool(zero.any()):
                        grad[zero] = torch.randn(grad[zero].shape, generator=g, device=dev, dtype=grad.dtype)
                        norms = grad.flatten(1).norm(p=2, dim=1)
                    direction = grad / norms.clamp_min(_TINY).view(-1, *([1] * (xb.dim() - 1)))
                    x_adv = project_l2(x_adv.detach() + step * direction, xb, radius)
            out.append(x_adv.detach())
    return torch.cat(out)


# --- both, on the same points ---------------------------------------------------------------------------


@dataclass
class SmoothingResult:
    """Certificates and attacks of one smoothed classifier on ``N`` points at ``R`` radii (plain arrays).

    ``adv_prediction[i, j]`` is PREDICT on the attack's point for point ``i`` within ``radii[j]`` (at radius 0 the
    point itself), :data:`ABSTAIN` included; ``adv_norm[i, j]`` its L2 distance to ``x[i]``. A point broken at a
    smaller radius is not attacked again: its witness carries over (the balls are nested).
    """

    sigma: float
    radii: tuple[float, ...]
    labels: np.ndarray
    certification: Certification
    adv_prediction: np.ndarray
    adv_norm: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    certify_s: float = 0.0
    attack_s: float = 0.0

    @property
    def n(self) -> int:
        return int(len(self.labels))

    @property
    def alpha(self) -> float:
        return float(self.params["alpha"])

    @property
    def radius_cap(self) -> float:
        return radius_cap(self.sigma, int(self.params["n"]), self.alpha)

    @property
    def certified(self) -> np.ndarray:
        """N x R: correct certificate with radius ``>= r``."""
        return np.stack([self.certification.certified(self.labels, r) for r in self.radii], axis=1)

    @property
    def broken(self) -> np.ndarray:
        """N x R: PREDICT on the attack's point is wrong or abstains."""
        return self.adv_prediction != self.labels[:, None]

    @property
    def inconsistent(self) -> np.ndarray:
        """N x R: certified at ``r`` yet PREDICT returned another class (not an abstention) within ``r``.

        An abstention is no contradiction: at a point on the edge of the certified ball the top class may keep
        only a little more than half the noise mass, and PREDICT abstains there by design.
        """
        wrong_class = self.broken & (self.adv_prediction != ABSTAIN)
        return self.certified & wrong_class

    def certified_accuracy(self, r: float) -> float:
        return float(self.certification.certified(self.labels, r).mean()) if self.n else math.nan

    @property
    def flags(self) -> list[Flag]:
        """:data:`INCONSISTENT` per radius where more certified points were contradicted than
        :func:`allowed_inconsistencies` allows; :data:`ABOVE_CAP` per radius no certificate can reach."""
        out: list[Flag] = []
        certified, inconsistent = self.certified, self.inconsistent
        cap = self.radius_cap
        for j, r in enumerate(self.radii):
            count, allowed = (
                int(inconsistent[:, j].sum()),
                allowed_inconsistencies(int(certified[:, j].sum()), self.alpha),
            )
            if count > allowed:
                out.append(
                    Flag(
                        INCONSISTENT,
                        f"{count} of {int(certified[:, j].sum())} points certified at radius {r:g} were classified "
                        f"otherwise by PREDICT within {r:g} (chance allows {allowed} at alpha {self.alpha:g}): the "
                        "certificate or the attack is wrong",
                        r,
                    )
                )
            if r > cap:
                out.append(
                    Flag(
                        ABOVE_CAP,
                        f"radius {r:g} is above {cap:.3f}, the largest that n={self.params['n']} samples can "
                        "certify at this sigma and alpha: certified accuracy is 0 there by construction",
                        r,
                    )
                )
        return out

    def summary_records(self) -> list[dict[str, Any]]:
        """One record per radius: certified and empirical accuracy with 95% Clopper-Pearson intervals, their gap
        (empirical minus certified: the part of robustness neither bound settles), the consistency count, its
        allowance, ``certified_abstained`` (certified points where PREDICT abstained on the attack's point: counted
        as broken, they are the only way the gap can turn negative, and they grow as ``predict_n`` shrinks) and
        the flag codes (``;``-separated)."""
        certified, broken, inconsistent = self.certified, self.broken, self.inconsistent
        abstained = certified & (self.adv_prediction == ABSTAIN)
        flags = self.flags
        records = []
        for j, r in enumerate(self.radii):
            k_cert, k_emp = int(certified[:, j].sum()), int((~broken[:, j]).sum())
            cert_low, cert_high = proportion_ci(k_cert, self.n)
            emp_low, emp_high = proportion_ci(k_emp, self.n)
            records.append(
                {
                    "radius": float(r),
                    "sigma": self.sigma,
                    "n": self.n,
                    "certified": k_cert,
                    "certified_acc": k_cert / self.n if self.n else math.nan,
                    "certified_ci_low": cert_low,
                    "certified_ci_high": cert_high,
                    "empirical": k_emp,
                    "empirical_acc": k_emp / self.n if self.n else math.nan,
                    "empirical_ci_low": emp_low,
                    "empirical_ci_high": emp_high,
                    "gap": (k_emp - k_cert) / self.n if self.n else math.nan,
                    "inconsistent": int(inconsistent[:, j].sum()),
                    "inconsistent_allowed": allowed_inconsistencies(k_cert, self.alpha),
                    "certified_abstained": int(abstained[:, j].sum()),
                    "flags": ";".join(sorted({f.code for f in flags if f.eps == r})),
                }
            )
        return records

    def sample_records(self) -> list[dict[str, Any]]:
        """One record per point: label, CERTIFY's prediction, ``pA_lower`` and radius, whether it is correct, and
        per radius ``r`` PREDICT on the attack's point (``adv_prediction@r``), its distance (``adv_norm@r``) and
        whether the point is broken (``broken@r``)."""
        cert = self.certification
        correct = cert.correct(self.labels)
        broken = self.broken
        records = []
        for i in range(self.n):
            row: dict[str, Any] = {
                "sample": i,
                "label": int(self.labels[i]),
                "prediction": int(cert.prediction[i]),
                "pa_lower": float(cert.pa_lower[i]),
                "radius": float(cert.radius[i]),
                "correct": bool(correct[i]),
            }
            for j, r in enumerate(self.radii):
                row[f"adv_prediction@{r:g}"] = int(self.adv_prediction[i, j])
                row[f"adv_norm@{r:g}"] = float(self.adv_norm[i, j])
                row[f"broken@{r:g}"] = bool(broken[i, j])
            records.append(row)
        return records


def _check_radii(radii: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(r) for r in radii)
    if not values:
        raise ValueError("no radii: give at least one (e.g. 0, 0.25, 0.5)")
    if any(not math.isfinite(r) or r < 0 for r in values):
        raise ValueError(f"invalid radii {list(radii)}: each must be a finite number >= 0")
    if list(values) != sorted(set(values)):
        raise ValueError(f"invalid radii {list(radii)}: must be increasing without repeats")
    return values


def certify_and_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    radii: Sequence[float],
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    predict_n: int | None = None,
    attack_steps: int = 20,
    noise_samples: int = 16,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    attack: SmoothAttack | None = None,
) -> SmoothingResult:
    """Certify (lower bound) and attack (upper bound) the smoothed classifier of ``model`` on the same points.

    1. :func:`certify` every point (``n0``, ``n``, ``alpha``).
    2. For each radius ``r`` in increasing order, attack the points not yet broken (:func:`smoothadv` with
       ``attack_steps`` steps and ``noise_samples`` noise draws per step, or ``attack``; its output is projected
       onto the ball and [0, 1]; at ``r = 0`` the point itself) and run :func:`predict` on the result with
       ``predict_n`` samples (default ``n``) and ``alpha``. A point is broken at ``r`` when that prediction is
       wrong or abstains.
    3. Consistency: a point certified at ``r`` that PREDICT assigns another class within ``r`` contradicts the
       certificate; more of them than :func:`allowed_inconsistencies` raise the :data:`INCONSISTENT` flag.

    ``x`` is N x C x H x W in [0, 1], ``y`` the labels; ``radii`` increasing, ``>= 0``; ``seed`` drives every noise
    stream; ``batch_size`` bounds the noisy copies per forward pass; ``device`` as :func:`certify`. Returns a
    :class:`SmoothingResult` (``summary_records()``, ``sample_records()``); nothing is written to disk.
    """
    rs = _check_radii(radii)
    predict_n = n if predict_n is None else predict_n
    _check(sigma, alpha, n0=n0, n=n, predict_n=predict_n, attack_steps=attack_steps, noise_samples=noise_samples)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    dev, x = _prepare(model, x, device)
    labels = y.detach().cpu().numpy().astype(np.int64)
    t0 = time.perf_counter()
    cert = certify(model, x, sigma=sigma, n0=n0, n=n, alpha=alpha, seed=seed, batch_size=batch_size, device=dev)
    certify_s = time.perf_counter() - t0

    def default_attack(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, r: float, s: int) -> torch.Tensor:
        return smoothadv(
            model, xs, ys, sigma=sigma, radius=r, steps=attack_steps, noise_samples=noise_samples, seed=s,
            batch_size=batch_size, device=dev,
        )  # fmt: skip

    run_attack = attack or default_attack
    adv_prediction = np.full((len(x), len(rs)), ABSTAIN, dtype=np.int64)
    adv_norm = np.zeros((len(x), len(rs)), dtype=np.float64)
    t1 = time.perf_counter()
    y_dev = y.to(dev)
    for j, r in enumerate(rs):
        todo = np.arange(len(x)) if j == 0 else np.flatnonzero(adv_prediction[:, j - 1] == labels)
        if j > 0:
            adv_prediction[:, j], adv_norm[:, j] = adv_prediction[:, j - 1], adv_norm[:, j - 1]
        if not len(todo):
            continue
        idx = torch.from_numpy(todo).to(dev)
        xs = x[idx]
        x_adv = xs if r == 0 else project_l2(run_attack(model, xs, y_dev[idx], r, stream_seed(seed, j)).to(dev), xs, r)
        preds = _predict(
            model, x_adv, todo, sigma=sigma, n=predict_n, alpha=alpha, seed=seed, stream=j, batch_size=batch_size
        )
        adv_prediction[todo, j] = preds
        adv_norm[todo, j] = (x_adv - xs).flatten(1).norm(p=2, dim=1).double().cpu().numpy()
    attack_s = time.perf_counter() - t1
    params = {
        "sigma": sigma,
        "n0": n0,
        "n": n,
        "alpha": alpha,
        "predict_n": predict_n,
        "attack": "smoothadv" if attack is None else getattr(attack, "__name__", type(attack).__name__),
        "attack_steps": attack_steps,
        "noise_samples": noise_samples,
        "seed": seed,
        "batch_size": batch_size,
    }
    return SmoothingResult(sigma, rs, labels, cert, adv_prediction, adv_norm, params, certify_s, attack_s)
