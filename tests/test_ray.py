"""The Ray executor gives the same summary table as the local one (deterministic columns equal)."""

from __future__ import annotations

import pandas as pd
import pytest

from robustbench_cnn.tables.results import comparable

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")


def test_ray_and_local_executors_agree(tmp_path, store) -> None:
    from robustbench_cnn.pipeline.cells import whitebox_cell
    from robustbench_cnn.pipeline.runner import run_cells
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=3), progress=False)
    cells = [
        whitebox_cell(
            "digits/lenet5-standard",
            "digits",
            "linf",
            [0, 0.1],
            s,
            n=80,
            store=str(store),
            device="cpu",
        )
        for s in ("fgsm", "pgd")
    ]
    local = run_cells(cells, tmp_path / "local", progress=False)
    remote = run_cells(cells, tmp_path / "ray", executor="ray", progress=False)
    a, b = comparable(local.summary()), comparable(remote.summary())
    assert len(a) == 4
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        local.samples().sort_values(["cell_id", "eps", "sample_id"]).reset_index(drop=True).drop(columns="run_id"),
        remote.samples().sort_values(["cell_id", "eps", "sample_id"]).reset_index(drop=True).drop(columns="run_id"),
    )
