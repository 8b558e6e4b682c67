"""What the commands print: results to stdout as rich tables (wide when piped), warnings to stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported when something is printed, not when `rbc --help` loads the commands
    from rich.table import Table


class _Out:
    """Results go to stdout (progress and warnings go to stderr); wide when piped, so tables stay whole."""

    def print(self, *objects: Any) -> None:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 240).print(*objects)


out = _Out()


def table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    """A rich table titled ``title`` of ``rows`` (dicts), with ``columns`` (default: the first row's keys)."""
    from rich.table import Table

    table = Table(title=title)
    columns = columns or (list(rows[0]) if rows else [])
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[fmt(row.get(c)) for c in columns])
    return table


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def show_summary(summary: Any) -> None:
    """Print a run's summary as a rich table and its validity flags as warnings (stderr)."""
    from robustbench_cnn.evaluation.flags import EXPLANATIONS

    cols = [
        "model",
        "attack",
        "norm",
        "eps",
        "targeted",
        "clean_acc",
        "robust_acc",
        "success_rate",
        "mean_norm",
        "mean_queries",
        "flags",
    ]
    rows = summary[cols].to_dict("records") if len(summary) else []
    for row in rows:
        row["eps"] = f"{row['eps']:g}"
    out.print(table("summary", rows, cols))
    codes = sorted({c for f in summary["flags"].dropna() for c in str(f).split(";") if c})
    for code in codes:
        click.secho(f"Warning [{code}]: {EXPLANATIONS.get(code, code)}", fg="yellow", err=True)
