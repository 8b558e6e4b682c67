"""Rich progress bars for long work (quiet when disabled or when output is not a terminal)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: Messages, warnings and tables go to stderr so that stdout stays parseable.
console = Console(stderr=True)


def make_progress(enabled: bool = True) -> Progress:
    """A progress bar with description, bar, count, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not enabled,
        refresh_per_second=4,
    )
