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


def test_auto_executor_uses_the_cores_it_may(monkeypatch) -> None:
    """``auto`` (``rbc benchmark``'s default) runs worker processes exactly when two or more CPUs and torch
    threads are there for them on a CPU device, or ``--workers`` asks for them; one thread, one CPU or an
    accelerator keeps the cells in this process, and an explicit executor is never replaced."""
    import torch

    from robustbench_cnn.core import devices
    from robustbench_cnn.pipeline import process_executor, runner

    threads = torch.get_num_threads()
    monkeypatch.setattr(process_executor, "available_cpus", lambda: 2)
    try:
        torch.set_num_threads(2)
        assert runner.choose_executor("auto", "cpu") == "processes"
        assert runner.choose_executor("local", "cpu") == "local"
        monkeypatch.setattr(process_executor, "available_cpus", lambda: 1)
        assert runner.choose_executor("auto", "cpu") == "local"  # one core: nothing to run beside
        assert runner.choose_executor("auto", "cpu", num_workers=2) == "processes"
        monkeypatch.setattr(process_executor, "available_cpus", lambda: 2)
        torch.set_num_threads(1)  # --threads 1: the user asked for one core
        assert runner.choose_executor("auto", "cpu") == "local"
        assert runner.choose_executor("processes", "cpu") == "processes"
        torch.set_num_threads(2)
        monkeypatch.setattr(devices, "resolve_device", lambda device: torch.device("cuda"))
        assert runner.choose_executor("auto", "cuda") == "local"  # one accelerator: the cells take turns on it
    finally:
        torch.set_num_threads(threads)
