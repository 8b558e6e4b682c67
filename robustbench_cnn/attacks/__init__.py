"""Adversarial attacks behind one contract: ``get_attack(name, **params)(model, x, y, threat)``.

Native attacks (fgsm, pgd, mi-fgsm, di-fgsm, di-mi-fgsm, apgd, apgd-mt; square and square-check: AutoAttack's
Square run on our own loop) and library adapters (foolbox: cw-l2, deepfool, boundary, hopskipjump, foolbox-pgd;
AutoAttack: apgd-ce, apgd-dlr, apgd-t, fab-t, autoattack; the universal patch: patch) register themselves in
:data:`ATTACKS` when imported below.
"""

from __future__ import annotations

from typing import Any

from robustbench_cnn.attacks import (  # noqa: F401  (register)
    adapters_autoattack,
    adapters_foolbox,
    apgd,
    fgsm,
    momentum,
    pgd,
    square,
    square_check,
)
from robustbench_cnn.attacks import minimal_norm as _minimal_norm  # noqa: F401  (register: fmn, fab, ddn)
from robustbench_cnn.attacks import patch as _patch  # noqa: F401  (register: patch)
from robustbench_cnn.attacks.base import Attack
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.attacks.targets import all_targets, choose_targets

__all__ = ["ATTACKS", "Attack", "all_targets", "choose_targets", "get_attack"]


def get_attack(name: str, **params: Any) -> Attack:
    """An attack instance by registry name, e.g. ``get_attack("pgd", steps=20)``.

    Unknown names raise :class:`~robustbench_cnn.core.errors.UnknownNameError` with close names;
    unknown parameters raise ``ValueError`` listing the accepted ones.
    """
    return ATTACKS.get(name)(**params)
