"""The detector registry: ``@DETECTORS.register("name")`` on a :class:`~detectors.base.Detector` subclass."""

from __future__ import annotations

from robustbench_cnn.core.registry import Registry

DETECTORS: Registry = Registry("detector")
