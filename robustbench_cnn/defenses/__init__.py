"""Adversarial-training defenses: training recipes for the one loop of ``robustbench_cnn.training``.

``get_defense(name, threat, **params)`` returns a recipe; :func:`defenses.train.defend` trains it, monitors
clean and PGD accuracy per epoch and saves a checkpoint whose card names the defense and the threat.
Recipes register themselves in :data:`DEFENSES` when imported below: ``standard`` (baseline),
``pgd-at`` (Madry et al. 2018), ``atta`` (Zheng et al. 2020, the single-step recipe), ``n-fgsm`` (de Jorge et
al. 2022), ``fgsm-rs`` (Wong et al. 2020), ``trades`` (Zhang et al. 2019), ``mart`` (Wang et al. 2020), ``free-at``
(Shafahi et al. 2019).
Each class may declare published settings per dataset and norm (``presets``, :mod:`defenses.presets`).
"""

from __future__ import annotations

from typing import Any

from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.defenses import (  # noqa: F401  (register)
    atta,
    fgsm_rs,
    free_at,
    mart,
    n_fgsm,
    pgd_at,
    standard,
    trades,
)
from robustbench_cnn.defenses import gaussian_noise as _gaussian_noise  # noqa: F401  (register)
from robustbench_cnn.defenses.base import Defense
from robustbench_cnn.defenses.registry import DEFENSES

__all__ = ["DEFENSES", "Defense", "defend", "get_defense"]


def get_defense(name: str, threat: ThreatModel | str, **params: Any) -> Defense:
    """A recipe by registry name, e.g. ``get_defense("pgd-at", "linf:0.3", steps=40)``.

    Unknown names raise :class:`~robustbench_cnn.core.errors.UnknownNameError` with close names; unknown or
    invalid parameters raise ``ValueError`` listing the accepted ones; ``None`` values mean the default.
    """
    return DEFENSES.get(name)(threat, **params)


def __getattr__(name: str) -> Any:  # ``defenses.defend`` without importing pandas at registration time
    if name == "defend":
        from robustbench_cnn.defenses.train import defend

        return defend
    raise AttributeError(f"module 'defenses' has no attribute {name!r}")
