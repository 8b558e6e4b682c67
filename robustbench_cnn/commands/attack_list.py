"""``rbc attacks list``: every registered attack with its properties, and the cascades."""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcGroup
from robustbench_cnn.commands.output import out, table

#: An iteration budget at or above this many steps/queries by default is noted as slow in the listing.
SLOW_STEPS = 10_000
_BUDGET_KEYS = ("steps", "n_iter", "n_queries")


def targets_text(cls: Any) -> str:
    """What an attack does with targets: ``user`` (it accepts ``--targeted`` targets), ``internal (K classes)``
    (it declares ``internally_targeted``: it tries the top K other classes itself and takes no user targets), or
    ``no``."""
    if cls.supports_targeted:
        return "user"
    if getattr(cls, "internally_targeted", False):
        k = cls.defaults.get("n_target_classes")
        return f"internal ({k} classes)" if k is not None else "internal"
    return "no"


def defaults_text(defaults: dict[str, Any]) -> str:
    """``{"steps": 40, "loss": "ce"}`` -> ``steps=40 loss=ce`` (numbers in their shortest form)."""

    def value(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return " ".join(f"{k}={value(v)}" for k, v in defaults.items())


def slow_note(defaults: dict[str, Any]) -> str:
    """A note for an attack whose default iteration budget (``steps``, ``n_iter``, ``n_queries``) is at least
    :data:`SLOW_STEPS` (multiplied by ``binary_search_steps`` where it has them, as C&W runs its steps per search
    step); empty otherwise."""
    for key in _BUDGET_KEYS:
        steps = defaults.get(key)
        if isinstance(steps, int) and not isinstance(steps, bool) and steps >= SLOW_STEPS:
            outer = defaults.get("binary_search_steps")
            total = f"{outer} x {steps:,}" if isinstance(outer, int) and outer > 1 else f"{steps:,}"
            return f"slow: {total} {key.replace('n_', '')} per batch by default (e.g. -p {key}={steps // 10})"
    return ""


@click.group("attacks", cls=RbcGroup)
def attacks_group() -> None:
    """Registered attacks."""


@attacks_group.command("list")
def attacks_list() -> None:
    """Show every registered attack: kind, norms, targets (user: accepts --targeted; internal: tries the top
    classes itself), defaults (KEY=VALUE, override with -p) and notes; then the cascades."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.evaluation.engine import CASCADES

    rows = [
        {
            "attack": name,
            "kind": cls.kind,
            "norms": ",".join(n.value for n in cls.norms) or cls.threat_kind,  # a patch attack: "patch"
            "targets": targets_text(cls),
            "defaults": defaults_text(cls.defaults),
            "note": slow_note(cls.defaults),
        }
        for name, cls in ATTACKS.items()
    ]
    out.print(table("attacks", rows))
    out.print(table("cascades", [{"cascade": k, "attacks": " -> ".join(a for a, _ in v)} for k, v in CASCADES.items()]))
