"""Detectors of adversarial inputs behind one contract (:class:`~detectors.base.Detector`): fit on training points,
calibrate a threshold on clean held-out points to a false positive rate, score and flag; the classifier abstains on
flagged points. Registered here (one decorated class each): ``feature-squeezing`` (Xu et al. 2018), ``learned``
(Metzen et al. 2017) and ``mahalanobis`` (Lee et al. 2018). Their evaluation, non-adaptive and adaptive, is
:mod:`robustbench_cnn.evaluation.detection`.
"""

from __future__ import annotations

from typing import Any

from robustbench_cnn.detectors import feature_squeezing, learned, mahalanobis  # noqa: F401  (register)
from robustbench_cnn.detectors.base import DEFAULT_FPR, Detector
from robustbench_cnn.detectors.registry import DETECTORS

__all__ = ["DEFAULT_FPR", "DETECTORS", "Detector", "get_detector"]


def get_detector(name: str, **params: Any) -> Detector:
    """A detector instance by registry name, e.g. ``get_detector("feature-squeezing", bits=1)``; unknown names raise
    :class:`~robustbench_cnn.core.errors.UnknownNameError` with close names, unknown parameters ``ValueError``."""
    return DETECTORS.get(name)(**params)
