"""The process executor (``rbc benchmark --executor processes --workers N``) gives the tables the local one gives."""

from __future__ import annotations

import pandas as pd
import pytest

from robustbench_cnn.tables.results import comparable


def test_worker_processes_and_local_agree(tmp_path, store) -> None:
    """Two spawned workers compute the same cells as the driver alone: equal summary and per-sample rows apart from
    the volatile columns (each cell is seeded; the workers run one torch thread each, as the driver here)."""
    import torch

    from robustbench_cnn.pipeline.cells import whitebox_cell
    from robustbench_cnn.pipeline.runner import run_cells
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    torch.set_num_threads(1)
    train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=3), progress=False)
    cells = [
        whitebox_cell("digits/lenet5-standard", "digits", "linf", [0, 0.1], s, n=80, store=str(store), device="cpu")
        for s in ("fgsm", "pgd", "square")
    ]
    local = run_cells(cells, tmp_path / "local", progress=False)
    pooled = run_cells(cells, tmp_path / "pool", executor="processes", num_workers=2, progress=False)
    a, b = comparable(local.summary()), comparable(pooled.summary())
    assert len(a) == 6
    pd.testing.assert_frame_equal(a, b)

    def samples(run) -> pd.DataFrame:
        table = run.samples().sort_values(["cell_id", "eps", "sample_id"]).reset_index(drop=True)
        return table.drop(columns="run_id")

    pd.testing.assert_frame_equal(samples(local), samples(pooled))


def test_a_cell_failing_in_a_worker_fails_the_run_in_the_driver(tmp_path, store) -> None:
    from robustbench_cnn.core.errors import CheckpointError
    from robustbench_cnn.pipeline.cells import Cell
    from robustbench_cnn.pipeline.process_executor import ProcessExecutor
    from robustbench_cnn.pipeline.runner import execute_cell

    broken = Cell(kind="whitebox", model="digits/none", dataset="digits", params={}, store=str(store))
    with pytest.raises(CheckpointError, match="digits/none"), ProcessExecutor(execute_cell, workers=1) as pool:
        pool.submit(broken)
        pool.next_done()
