"""AutoAttack (PyPI ``pyautoattack``, import name ``pyautoattack``) behind the Attack contract.

AutoAttack's attacks seed torch's *global* RNG themselves (``torch.random.manual_seed(seed)``);
each call runs inside :func:`~attacks.functional.seeded_global_rng`, so the caller's global RNG is
left untouched. The library seed is the call's ``seed`` (``generator.initial_seed()``), used for
every mini-batch as AutoAttack itself does, so ``get_attack("autoattack")(..., seed=s)`` equals
``AutoAttack(model, seed=s, ...).run_standard_evaluation(x, y)`` on the same points.

AutoAttack's targeted attacks (``apgd-t``, ``fab-t``) are *multi-targeted*: they try the top-k
classes other than the label themselves, so they take no user-supplied targets
(``supports_targeted = False``) and report ``target = -1``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack, PerturbOutput
from robustbench_cnn.attacks.functional import seeded_global_rng
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.types import Norm, ThreatModel

_AA_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def _need_classes(name: str, have: int, need: int) -> None:
    if have < need:
        raise ValueError(f"attack {name!r} needs a model with at least {need} classes, got {have}")


class _AutoAttackBase(Attack):
    norms = (Norm.LINF, Norm.L2)
    supports_targeted = False
    #: targeted internally (against the top ``n_target_classes`` other classes), although no user targets are taken
    internally_targeted: ClassVar[bool] = False
    deterministic = False
    kind = "white-box"
    black_box = False
    single_step = False
    eot_param = None

    def make(self, model: nn.Module, threat: ThreatModel, seed: int, device: torch.device, num_classes: int) -> Any:
        raise NotImplementedError

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        seed = generator.initial_seed()
        attack = self.make(model, threat, seed, x.device, _num_classes(model, x))
        with seeded_global_rng(seed, x.device):
            return attack.perturb(x, y)


@ATTACKS.register("apgd-ce")
class APGDCE(_AutoAttackBase):
    """APGD on the cross-entropy loss (AutoAttack's ``APGDAttack``, loss ``ce``).

    Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020 (https://arxiv.org/abs/2003.01690).

    Distance: linf, l2.

    Arguments (AutoAttack defaults):
        n_iter (int): iterations per restart (default 100).
        n_restarts (int): random restarts, each on the points still robust (default 1).
        rho (float): step-size halving threshold (default 0.75).
        eot_iter (int): gradient samples per step for randomised models (default 1).

    Targeted: no. Deterministic: no (random start; seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("apgd-ce")(model, x, y, ThreatModel.parse("linf:8/255"), seed=0).robust_accuracy
    """

    loss = "ce"
    eot_param = "eot_iter"
    defaults = {"n_iter": 100, "n_restarts": 1, "rho": 0.75, "eot_iter": 1}

    def make(self, model, threat, seed, device, num_classes):
        from pyautoattack.autopgd_base import APGDAttack

        _need_classes(self.name, num_classes, self.min_classes)
        p = self.params
        return APGDAttack(
            model,
            n_iter=int(p["n_iter"]),
            norm=_AA_NORM[threat.norm],
            n_restarts=int(p["n_restarts"]),
            eps=float(threat.eps),
            seed=seed,
            loss=self.loss,
            eot_iter=int(p["eot_iter"]),
            rho=float(p["rho"]),
            verbose=False,
            device=device,
        )


@ATTACKS.register("apgd-dlr")
class APGDDLR(APGDCE):
    """APGD on the DLR loss (AutoAttack's ``APGDAttack``, loss ``dlr``); needs >= 3 classes.

    Paper: Croce & Hein, ICML 2020 (https://arxiv.org/abs/2003.01690).

    Distance: linf, l2. Arguments as ``apgd-ce``: n_iter=100, n_restarts=1, rho=0.75, eot_iter=1.

    Targeted: no. Deterministic: no (seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("apgd-dlr")(model, x, y, ThreatModel.parse("l2:0.5")).robust_accuracy
    """

    loss = "dlr"
    min_classes = 3


@ATTACKS.register("apgd-t")
class APGDT(_AutoAttackBase):
    """Multi-targeted APGD on the targeted DLR loss (AutoAttack's ``APGDAttack_targeted``).

    Paper: Croce & Hein, ICML 2020 (https://arxiv.org/abs/2003.01690).

    Distance: linf, l2.

    Arguments (AutoAttack standard-version defaults):
        n_iter (int): iterations per target and restart (default 100).
        n_restarts (int): restarts per target class (default 1).
        n_target_classes (int): top-k classes tried as targets, capped at classes - 1 (default 9).
        rho (float): step-size halving threshold (default 0.75).

    Targeted: multi-targeted internally; no user-supplied targets. Needs >= 4 classes.
    Deterministic: no (seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("apgd-t", n_target_classes=3)(model, x, y, ThreatModel.parse("linf:0.1"))
    """

    min_classes = 4
    internally_targeted = True
    defaults = {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9, "rho": 0.75}

    def make(self, model, threat, seed, device, num_classes):
        from pyautoattack.autopgd_base import APGDAttack_targeted

        _need_classes(self.name, num_classes, self.min_classes)
        p = self.params
        return APGDAttack_targeted(
            model,
            n_iter=int(p["n_iter"]),
            norm=_AA_NORM[threat.norm],
            n_restarts=int(p["n_restarts"]),
            eps=float(threat.eps),
            seed=seed,
            rho=float(p["rho"]),
            n_target_classes=min(int(p["n_target_classes"]), num_classes - 1),
            verbose=False,
            device=device,
        )


@ATTACKS.register("fab-t")
class FABT(_AutoAttackBase):
    """Multi-targeted FAB (AutoAttack's ``FABAttack_PT`` with ``targeted=True``).

    Paper: Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary
    Attack", ICML 2020 (https://arxiv.org/abs/1907.02044).

    Distance: linf, l2.

    Arguments (AutoAttack standard-version defaults):
        n_iter (int): iterations (default 100).
        n_restarts (int): restarts per target class (default 1).
        n_target_classes (int): top-k classes tried as targets, capped at classes - 1 (default 9).
        alpha_max (float): default 0.1. eta (float): overshoot, default 1.05. beta (float): default 0.9.

    Targeted: multi-targeted internally; no user-supplied targets. Deterministic: no (seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("fab-t", n_iter=20)(model, x, y, ThreatModel.parse("l2:0.5")).robust_accuracy
    """

    internally_targeted = True
    defaults = {"n_iter": 100, "n_restarts": 1, "n_target_classes": 9, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9}

    def make(self, model, threat, seed, device, num_classes):
        from pyautoattack.fab_pt import FABAttack_PT

        _need_classes(self.name, num_classes, 2)
        p = self.params
        return FABAttack_PT(
            model,
            norm=_AA_NORM[threat.norm],
            n_restarts=int(p["n_restarts"]),
            n_iter=int(p["n_iter"]),
            eps=float(threat.eps),
            alpha_max=float(p["alpha_max"]),
            eta=float(p["eta"]),
            beta=float(p["beta"]),
            seed=seed,
            targeted=True,
            n_target_classes=min(int(p["n_target_classes"]), num_classes - 1),
            verbose=False,
            device=device,
        )


@ATTACKS.register("autoattack")
class AutoAttackCascade(_AutoAttackBase):
    """AutoAttack: the worst case over a cascade of parameter-free attacks (``AutoAttack``).

    Paper: Croce & Hein, ICML 2020 (https://arxiv.org/abs/2003.01690).

    Distance: linf, l2.

    Arguments:
        version (str): ``standard`` (apgd-ce, apgd-t, fab-t, square; default), ``plus``
            (adds apgd-dlr, fab, more restarts), ``rand`` (apgd-ce/dlr with EOT for randomised
            defenses) or ``custom`` (the ``attacks`` list, with AutoAttack's constructor settings).
        attacks (list[str] | None): for ``version="custom"`` only, a sub-list of apgd-ce,
            apgd-dlr, fab, square, apgd-t, fab-t (default None).

    Each attack of the cascade runs only on the points still robust. With fewer than 10 classes
    the number of target classes of apgd-t / fab-t is capped at classes - 1.
    Targeted: no (apgd-t / fab-t inside are multi-targeted). Deterministic: no (seeded).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> res = get_attack("autoattack")(model, x, y, ThreatModel.parse("linf:8/255"), seed=0)
        >>> res.robust_accuracy
    """

    defaults = {"version": "standard", "attacks": None}
    VERSIONS = ("standard", "plus", "rand", "custom")
    SUB_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
    #: the cascade of each version (pyautoattack's ``AutoAttack``; ``custom`` takes ``attacks``)
    VERSION_ATTACKS = {
        "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
        "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
        "rand": ("apgd-ce", "apgd-dlr"),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        version, subs = self.params["version"], self.params["attacks"]
        if version not in self.VERSIONS:
            raise ValueError(f"invalid AutoAttack version {version!r}: use one of {', '.join(self.VERSIONS)}")
        if (version == "custom") != (subs is not None):
            raise ValueError("AutoAttack: give attacks=[...] exactly when version='custom'")
        if subs is not None:
            subs = [str(a) for a in subs]
            bad = [a for a in subs if a not in self.SUB_ATTACKS] or ([] if subs else ["(empty)"])
            if bad:
                raise ValueError(
                    f"invalid AutoAttack attack(s) {', '.join(bad)}: use a non-empty "
                    f"sub-list of {', '.join(self.SUB_ATTACKS)}"
                )
            self.params["attacks"] = subs

    def make(self, model, threat, seed, device, num_classes):
        from pyautoattack import AutoAttack

        for sub in self.params["attacks"] or self.VERSION_ATTACKS[self.params["version"]]:
            if sub in ATTACKS:  # apgd-dlr needs 3 classes, apgd-t 4 (pyautoattack fails with an IndexError)
                _need_classes(f"autoattack ({sub})", num_classes, ATTACKS.get(sub).min_classes)
        aa = AutoAttack(
            model,
            norm=_AA_NORM[threat.norm],
            eps=float(threat.eps),
            seed=seed,
            version=self.params["version"],
            attacks=self.params["attacks"],
            device=device,
        )
        aa.verbose = False
        aa.apgd_targeted.n_target_classes = min(aa.apgd_targeted.n_target_classes, num_classes - 1)
        aa.fab.n_target_classes = min(aa.fab.n_target_classes, num_classes - 1)
        return aa

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        seed = generator.initial_seed()
        aa = self.make(model, threat, seed, x.device, _num_classes(model, x))
        with seeded_global_rng(seed, x.device):
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
        return x_adv
