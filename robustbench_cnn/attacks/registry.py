"""The attack registry: ``@ATTACKS.register("name")`` on an :class:`~attacks.base.Attack` subclass."""

from __future__ import annotations

from robustbench_cnn.core.registry import Registry

ATTACKS: Registry = Registry("attack")
