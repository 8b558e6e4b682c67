"""Speed-up of the Ray executor with 2 workers over 1 on the same grid of independent cells.

    python benchmarks/grid_scaling.py [--cells 8] [--n 450] [--steps 100] [--restarts 3] [--out ...]

Cells must be long enough to pay for a Ray worker start (importing torch, foolbox, pyautoattack): with ~3 s
cells 2 workers were slower than 1 (0.69x); with ~6 s cells (the defaults) 1.73x.

Trains (once, into the store) a digits LeNet-5 and FastCNN, builds a grid of evaluation cells (models x
attacks x seeds), runs it with Ray limited to 1 CPU and then to 2 CPUs, checks both give the same summary
table, and writes wall times and the speed-up (target >= 1.7x on a 2-core machine) to a table.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--n", type=int, default=450)
    parser.add_argument("--steps", type=int, default=100, help="PGD steps per cell (more: longer cells)")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--out", default="results/benchmarks/grid_scaling.csv")
    args = parser.parse_args()

    import ray
    import torch

    from robustbench_cnn.pipeline.cells import whitebox_cell
    from robustbench_cnn.pipeline.runner import run_cells
    from robustbench_cnn.store import list_checkpoints
    from robustbench_cnn.tables.results import comparable
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    torch.set_num_threads(1)
    have = {c.name for c in list_checkpoints()}
    for arch in ("lenet5", "fastcnn"):
        if f"digits/{arch}-standard" not in have:
            train_model(arch, "digits", TrainConfig.for_dataset("digits"), progress=False)
    cells = [
        whitebox_cell(
            f"digits/{arch}-standard",
            "digits",
            "linf",
            [0.05, 0.1, 0.2],
            "pgd",
            attack_params={"steps": args.steps, "restarts": args.restarts, "early_stop": False},
            n=args.n,
            seed=seed,
            device="cpu",
        )
        for seed in range(args.cells // 2)
        for arch in ("lenet5", "fastcnn")
    ]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"grid-scaling-{os.getpid()}"
    rows, tables = [], []
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            start = time.perf_counter()
            store = run_cells(cells, tmp / f"w{workers}", executor="ray", progress=False)
            seconds = time.perf_counter() - start
        finally:
            ray.shutdown()
        tables.append(comparable(store.summary()))
        rows.append({"workers": workers, "cells": len(cells), "n": args.n, "seconds": round(seconds, 2)})
        print(f"{workers} worker(s): {seconds:.1f} s for {len(cells)} cells", flush=True)
    pd.testing.assert_frame_equal(tables[0], tables[1])
    speedup = rows[0]["seconds"] / rows[1]["seconds"]
    for row in rows:
        row["speedup_vs_1"] = round(rows[0]["seconds"] / row["seconds"], 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"speed-up of 2 Ray workers over 1: {speedup:.2f}x (target >= 1.7x); tables identical; written to {out}")


if __name__ == "__main__":
    main()
