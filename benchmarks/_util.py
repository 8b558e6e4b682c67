"""Small helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os

import pandas as pd


def load_average() -> str:
    """The 1/5/15-minute load average as text: benchmarks record it beside every timing."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def markdown_table(df: pd.DataFrame, float_format: str = ".4f") -> str:
    """A GitHub-style Markdown table of ``df`` (floats formatted with ``float_format``)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(format(v, float_format) if isinstance(v, float) else str(v)
                                       for v in row) + " |")
    return "\n".join(lines) + "\n"
