"""``rbc models list``: registered architectures and the trained checkpoints of the store."""

from __future__ import annotations

import re

import click

from robustbench_cnn.commands.errors import RbcGroup
from robustbench_cnn.commands.options import (
    store_option,
)
from robustbench_cnn.commands.output import out, table

#: The longest description ``rbc models list`` shows before it cuts (with an ellipsis).
DESCRIPTION_WIDTH = 110


def first_sentence(doc: str, width: int = DESCRIPTION_WIDTH) -> str:
    """The first sentence of a docstring (its first paragraph up to a full stop before a capital, or its end), on one line; longer than
    ``width`` characters, cut at a word boundary and ended with "…" so a cut never reads as the whole text."""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    end = re.search(r"\.\s+(?=[A-Z])", paragraph)  # "et al. 2015" goes on: a sentence ends before a capital
    sentence = paragraph[: end.start() + 1] if end else paragraph
    if len(sentence) <= width:
        return sentence
    head = sentence[: width - 1]
    return (head.rsplit(" ", 1)[0] if " " in head else head).rstrip(" ,;:(") + "…"


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
        {"architecture": name, "description": first_sentence(MODELS.get(name).__doc__ or "")}
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
