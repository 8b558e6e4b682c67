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


@pytest.mark.slow
def test_the_default_plan_gives_the_same_tables_with_ray_and_locally(tmp_path) -> None:
    """Every cell kind of the default plan (training, white-box untargeted and targeted, proxy training, transfer,
    transfer matrix) runs as a Ray task (2 workers) and gives the tables the local executor gives, apart from the
    volatile columns (run id, time, device, versions, git sha): equal values, and equal cell ids, which hash the
    weights each cell evaluated. Each executor trains into its own empty store, so the Ray run trains its models
    and its substitute in workers. Smaller than the shipped plan (60 points, one epoch, 2 proxy rounds) for speed,
    with the same cells."""
    from robustbench_cnn.pipeline.benchmark import run_benchmark
    from robustbench_cnn.pipeline.plan import load_plan
    from robustbench_cnn.tables.results import VOLATILE_COLUMNS

    plan = load_plan("default")
    plan.n = 60
    for spec in plan.models:
        spec.epochs = 1
    plan.proxy = {**plan.proxy, "rounds": 2, "budget": 300, "epochs_per_round": 2}
    kinds = {c.kind for c in plan.cells(store=tmp_path / "probe")}
    assert kinds == {"defense-train", "whitebox", "proxy-train", "transfer", "transfer-matrix"}
    runs = {
        executor: run_benchmark(
            plan,
            tmp_path / executor,
            executor=executor,
            num_workers=2,
            store=tmp_path / f"store-{executor}",
            device="cpu",
            progress=False,
        )
        for executor in ("local", "ray")
    }
    local, remote = runs["local"], runs["ray"]
    assert sorted(local.trained) == sorted(remote.trained) and len(remote.trained) == len(plan.models)
    a, b = comparable(local.summary), comparable(remote.summary)
    blackbox = a[a["attack_kind"] == "transfer"]
    assert len(blackbox) == len(plan.models) * len([e for e in plan.eps if e > 0])  # proxy -> every model
    assert set(a["targeted"]) == {True, False}
    pd.testing.assert_frame_equal(a, b)

    def matrix(run) -> pd.DataFrame:
        table = pd.read_parquet(run.run_dir / "transfer_matrix.parquet")
        table = table.drop(columns=[c for c in VOLATILE_COLUMNS if c in table])
        return table.sort_values(["source", "target"]).reset_index(drop=True)

    assert len(matrix(local)) == len(plan.models) ** 2
    pd.testing.assert_frame_equal(matrix(local), matrix(remote))
