"""``rbc attacks list``: every registered attack with its properties, and the cascades."""

from __future__ import annotations

import json

import click

from robustbench_cnn.commands.errors import RbcGroup
from robustbench_cnn.commands.output import out, table


@click.group("attacks", cls=RbcGroup)
def attacks_group() -> None:
    """Registered attacks."""


@attacks_group.command("list")
def attacks_list() -> None:
    """Show every registered attack: kind, norms, targeted support, defaults."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.evaluation.engine import CASCADES

    rows = [
        {
            "attack": name,
            "kind": cls.kind,
            "norms": ",".join(n.value for n in cls.norms),
            "targeted": cls.supports_targeted,
            "defaults": json.dumps(cls.defaults, default=str),
        }
        for name, cls in ATTACKS.items()
    ]
    out.print(table("attacks", rows))
    out.print(table("cascades", [{"cascade": k, "attacks": " -> ".join(a for a, _ in v)} for k, v in CASCADES.items()]))
