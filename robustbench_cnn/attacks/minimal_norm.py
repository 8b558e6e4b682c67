"""Minimal-norm attacks: each point's smallest adversarial perturbation, so one run gives the whole curve.

A minimal-norm attack does not stop at the first adversarial point inside a fixed ball: it searches for
the adversarial point *closest* to the input. Run once with a :class:`~robustbench_cnn.core.types.ThreatModel`
whose ``eps`` is the largest epsilon of interest (a bound), its per-sample ``perturbation_norm`` is the
smallest norm found for every broken point; points whose minimal perturbation exceeds the bound are projected
back into the ball by the base class and count as not broken. The robust accuracy at any smaller epsilon
follows without another attack (:mod:`robustbench_cnn.evaluation.minimal_norm`).

Each class declares ``minimal_norm = True`` (read it with ``getattr(cls, "minimal_norm", False)``).

- ``fmn``: Fast Minimum-Norm (foolbox's ``L0FMNAttack`` / ``L1FMNAttack`` / ``L2FMNAttack`` / ``LInfFMNAttack``);
- ``fab``: untargeted FAB (pyautoattack's ``FABAttack_PT``), restarts kept per sample at the smallest norm;
- ``ddn``: Decoupled Direction and Norm (foolbox's ``DDNAttack``), L2.

The libraries draw from torch's global RNG, so each call runs inside
:func:`~robustbench_cnn.attacks.functional.seeded_global_rng` with the call's seed.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack, PerturbOutput
from robustbench_cnn.attacks.functional import seeded_global_rng
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.types import Norm, ThreatModel

__all__ = ["DDN", "FAB", "FMN", "MinimalNormAttack"]


def _foolbox_model(model: nn.Module, device: torch.device) -> Any:
    import foolbox as fb

    return fb.PyTorchModel(model, bounds=(0, 1), device=device)


def _foolbox_criterion(y: torch.Tensor, targets: torch.Tensor | None) -> Any:
    import foolbox as fb

    return fb.criteria.TargetedMisclassification(targets) if targets is not None else fb.criteria.Misclassification(y)


@functools.cache
def _l2_fmn_class() -> type:
    """foolbox's ``L2FMNAttack`` with the L2 projection of the paper (``fmn`` with ``l2_projection=True``).

    foolbox 3.3.4's ``L2FMNAttack.project`` computes its scaling factor as ``min(1, norms / norms)``, which is
    always 1: the perturbation is never shrunk to the adaptive radius, so the released attack follows the
    normalised gradient with a cosine-annealed step and keeps the smallest adversarial iterate it visits. FMN
    (Pintor et al. 2021, Alg. 1) projects ``delta`` onto the L2 ball of radius ``epsilon``,
    ``delta * min(1, epsilon / ||delta||_2)``, which this subclass does; everything else is foolbox's.
    """
    import eagerpy as ep
    import foolbox as fb
    from foolbox.devutils import atleast_kd, flatten

    class _L2FMN(fb.attacks.L2FMNAttack):
        def project(self, x: Any, x0: Any, epsilon: Any) -> Any:
            delta = x - x0
            norms = ep.maximum(flatten(delta).norms.l2(axis=-1), 1e-12)
            factor = atleast_kd(ep.minimum(1, epsilon / norms), x.ndim)
            return x0 + delta * factor

    return _L2FMN


class MinimalNormAttack(Attack):
    """Base of the minimal-norm attacks: ``minimal_norm = True``; ``threat.eps`` is only a bound."""

    minimal_norm: ClassVar[bool] = True
    # the properties every attack declares (tests/test_attack_properties.py): iterative, white-box, no EOT
    single_step: ClassVar[bool] = False
    black_box: ClassVar[bool] = False
    eot_param: ClassVar[str | None] = None


@ATTACKS.register("fmn")
class FMN(MinimalNormAttack):
    """Fast Minimum-Norm attack (foolbox ``L0FMNAttack`` / ``L1FMNAttack`` / ``L2FMNAttack`` / ``LInfFMNAttack``).

    Paper: Pintor, Roli, Brendel & Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive Norm
    Constraints", NeurIPS 2021 (https://arxiv.org/abs/2102.12827).

    Distance: linf, l2, l1, l0 (the threat's norm picks the class). Minimal-norm attack: the perturbation is
    the smallest adversarial one found (``threat.eps`` is a bound; larger ones count as not broken).

    Arguments (foolbox defaults):
        steps (int): iterations (default 100).
        max_stepsize (float): initial step size, cosine-annealed (default 1.0).
        min_stepsize (float | None): final step size (default None: ``max_stepsize / 100``).
        gamma (float): initial factor of the norm-constraint update, cosine-annealed to 0.001 (default 0.05).
        l2_projection (bool): l2 only: project onto the adaptive L2 ball as the paper does (default False:
            foolbox 3.3.4 as released, whose L2 projection is a no-op; see docs/minimal_norm.md for what each
            finds).

    Targeted: yes. Deterministic: yes (no random start).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> res = get_attack("fmn", steps=200)(model, x, y, ThreatModel.parse("l2:3.0"))
        >>> res.perturbation_norm[res.success]  # each broken point's minimal L2 norm (<= 3.0)
    """

    norms = (Norm.LINF, Norm.L2, Norm.L1, Norm.L0)
    supports_targeted = True
    deterministic = True
    kind = "white-box"
    optional_numbers = frozenset({"min_stepsize"})
    defaults = {"steps": 100, "max_stepsize": 1.0, "min_stepsize": None, "gamma": 0.05, "l2_projection": False}

    def build(self, norm: Norm) -> Any:
        import foolbox as fb

        classes = {
            Norm.LINF: fb.attacks.LInfFMNAttack,
            Norm.L2: _l2_fmn_class() if self.params["l2_projection"] else fb.attacks.L2FMNAttack,
            Norm.L1: fb.attacks.L1FMNAttack,
            Norm.L0: fb.attacks.L0FMNAttack,
        }
        p = self.params
        return classes[norm](
            steps=int(p["steps"]),
            max_stepsize=float(p["max_stepsize"]),
            min_stepsize=None if p["min_stepsize"] is None else float(p["min_stepsize"]),
            gamma=float(p["gamma"]),
        )

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        attack = self.build(threat.norm)
        with seeded_global_rng(generator.initial_seed(), x.device):
            # run() without early stop: the minimal norm, not the first point inside the ball
            return attack.run(_foolbox_model(model, x.device), x, _foolbox_criterion(y, targets))


@ATTACKS.register("ddn")
class DDN(MinimalNormAttack):
    """Decoupled Direction and Norm attack (foolbox ``DDNAttack``), L2.

    Paper: Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, "Decoupling Direction and Norm for Efficient
    Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019 (https://arxiv.org/abs/1811.09600).

    Distance: l2. Minimal-norm attack: the perturbation is the smallest adversarial one found
    (``threat.eps`` is a bound; larger ones count as not broken).

    Arguments (foolbox defaults):
        init_epsilon (float): initial norm of the perturbation (default 1.0).
        steps (int): iterations (default 100).
        gamma (float): the norm is multiplied by ``1 - gamma`` (adversarial) or ``1 + gamma`` (not) each
            step (default 0.05).

    Targeted: yes. Deterministic: no (a zero gradient is replaced by Gaussian noise; seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> res = get_attack("ddn", steps=200)(model, x, y, ThreatModel.parse("l2:3.0"))
        >>> res.perturbation_norm[res.success]
    """

    norms = (Norm.L2,)
    supports_targeted = True
    deterministic = False
    kind = "white-box"
    defaults = {"init_epsilon": 1.0, "steps": 100, "gamma": 0.05}

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        import foolbox as fb

        p = self.params
        attack = fb.attacks.DDNAttack(
            init_epsilon=float(p["init_epsilon"]), steps=int(p["steps"]), gamma=float(p["gamma"])
        )
        with seeded_global_rng(generator.initial_seed(), x.device):
            return attack.run(_foolbox_model(model, x.device), x, _foolbox_criterion(y, targets))


_FAB_NORM = {Norm.LINF: "Linf", Norm.L2: "L2", Norm.L1: "L1"}


@ATTACKS.register("fab")
class FAB(MinimalNormAttack):
    """Untargeted Fast Adaptive Boundary attack (pyautoattack ``FABAttack_PT``, ``targeted=False``).

    Paper: Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack",
    ICML 2020 (https://arxiv.org/abs/1907.02044).

    Distance: linf, l2, l1. Minimal-norm attack: each restart runs FAB's ``attack_single_run`` and every
    point keeps its smallest adversarial perturbation over the restarts (``threat.eps`` is a bound, and the
    radius of the random starts of restarts after the first, as in AutoAttack: ``eps / 2``).

    Arguments (AutoAttack defaults):
        n_iter (int): iterations per restart (default 100).
        n_restarts (int): runs; the first starts at x, the others at random points (default 1).
        alpha_max (float): largest step toward the original point (default 0.1).
        eta (float): overshoot of the projection onto the linearised boundary (default 1.05).
        beta (float): backward step toward the original after an adversarial iterate (default 0.9).

    Targeted: no (``fab-t`` is the multi-targeted variant). Deterministic: no (restarts after the first are
    random; seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> res = get_attack("fab", n_restarts=3)(model, x, y, ThreatModel.parse("linf:0.3"), seed=0)
        >>> res.perturbation_norm[res.success]
    """

    norms = (Norm.LINF, Norm.L2, Norm.L1)
    supports_targeted = False
    deterministic = False
    kind = "white-box"
    defaults = {"n_iter": 100, "n_restarts": 1, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9}

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        from pyautoattack.fab_pt import FABAttack_PT

        p, seed = self.params, generator.initial_seed()
        fab = FABAttack_PT(
            model,
            norm=_FAB_NORM[threat.norm],
            n_restarts=1,
            n_iter=int(p["n_iter"]),
            eps=float(threat.eps),
            alpha_max=float(p["alpha_max"]),
            eta=float(p["eta"]),
            beta=float(p["beta"]),
            seed=seed,
            targeted=False,
            verbose=False,
            device=x.device,
        )
        best = x.clone()
        best_norm = torch.full((x.shape[0],), float("inf"), device=x.device)
        with seeded_global_rng(seed, x.device), torch.no_grad():
            for restart in range(max(int(p["n_restarts"]), 1)):
                adv = fab.attack_single_run(x, y, use_rand_start=restart > 0).to(x.dtype)
                norm = threat.norm.measure(adv - x).to(x.device)
                better = (model(adv).argmax(dim=1) != y) & (norm < best_norm)
                best[better], best_norm[better] = adv[better], norm[better]
        return best
