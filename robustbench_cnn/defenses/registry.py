"""The defense registry: ``@DEFENSES.register("name")`` on a :class:`~defenses.base.Defense` subclass."""

from __future__ import annotations

from robustbench_cnn.core.registry import Registry

DEFENSES: Registry = Registry("defense")
