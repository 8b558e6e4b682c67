"""``rbc models list``: registered architectures and the trained checkpoints of the store."""

from __future__ import annotations

import click

from robustbench_cnn.commands.errors import RbcGroup
from robustbench_cnn.commands.options import (
    store_option,
)
from robustbench_cnn.commands.output import out, table


@click.group(cls=RbcGroup)
def models() -> None:
    """Architectures and trained checkpoints."""


@models.command("list")
@click.argument("pattern", default="*")
@store_option
def models_list(pattern: str, store: str | None) -> None:
    """Show registered architectures (matching PATTERN) and the trained checkpoints of the store."""
    from robustbench_cnn.models import MODELS
    from robustbench_cnn.store import list_checkpoints, store_root

    arch_rows = [
        {"architecture": name, "description": (MODELS.get(name).__doc__ or "").strip().splitlines()[0]}
        for name in MODELS.list(pattern)
    ]
    out.print(table("architectures", arch_rows))
    cards = list_checkpoints(store)
    rows = [
        {
            "name": c.name,
            "dataset": c.dataset,
            "clean_acc": c.clean_accuracy,
            "recipe": c.recipe,
            "threat": c.threat or "",
            "epochs": c.epochs,
            "date": c.created[:19],
        }
        for c in cards
    ]
    title = f"checkpoints in {store_root(store) / 'checkpoints'}"
    out.print(table(title, rows, ["name", "dataset", "clean_acc", "recipe", "threat", "epochs", "date"]))
