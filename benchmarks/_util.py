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
        lines.append("| " + " | ".join(format(v, float_format) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def standard_model(name: str, store: str | None, data_dir: str | None, epochs: int | None = None):
    """The store checkpoint ``name`` (``<dataset>/<arch>-standard``) in eval mode, trained here when missing
    (``epochs``: default by dataset)."""
    from robustbench_cnn.core.errors import CheckpointError
    from robustbench_cnn.store import load_checkpoint
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    try:
        return load_checkpoint(name, store, "cpu")[0].eval()
    except CheckpointError:
        dataset, _, rest = name.partition("/")
        arch = rest.rsplit("-standard", 1)[0]
        config = TrainConfig.for_dataset(dataset, epochs=epochs, device="cpu")
        return train_model(arch, dataset, config, store=store, data_dir=data_dir, progress=False).model.eval()
