"""What a plan's ``[patch]`` table costs: seconds to learn one universal patch per architecture, times its patches.

Run from the repository root (needs the plan's dataset, e.g. ``RBC_DATA_DIR=/work/shared/data`` for MNIST)::

    python benchmarks/patch_cost.py --plan mnist --threads 1

For each architecture of the plan's ``[patch]`` models it learns one patch (the first size of ``sizes``, untargeted,
the table's attack parameters, on ``train_n`` training images) on freshly initialised weights: the cost is fixed by
steps x batch x restarts, not by what the weights are. It prints a Markdown table: seconds per patch, patches per
model (sizes x targets), models of that architecture, and the total. Evaluating a learned patch (one forward pass
over the test points per placement) is left out: under a second per patch on 1,000 MNIST points.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from robustbench_cnn.attacks import get_attack
    from robustbench_cnn.core.patch_threat import PatchThreat
    from robustbench_cnn.data import dataset_info, load_split
    from robustbench_cnn.models import build_model
    from robustbench_cnn.pipeline.plan import load_plan

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", default="mnist", help="built-in plan name or TOML path with a [patch] table")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = load_plan(args.plan)
    if plan.patch is None:
        raise SystemExit(f"plan {args.plan} has no [patch] table")
    dataset = plan.datasets[0]
    info = dataset_info(dataset)
    with tempfile.TemporaryDirectory() as empty:  # an empty store: the plan's cells as a fresh run expands them
        cells = [c for c in plan.cells(store=empty) if c.kind == "patch" and c.dataset == dataset]
    arch_of = {spec.checkpoint_name(cells[0].model.split("/", 1)[0]): spec.arch for spec in plan.models}
    archs = Counter(arch_of[c.model] for c in cells)
    params = cells[0].params  # one [patch] table: the same settings in every cell
    train = load_split(dataset, "train", n=params["train_n"])
    per_model = len(params["sizes"]) * len(params["targets"])
    print("| arch | s per patch | patches per model | models | s in all |\n|---|---|---|---|---|")
    total = 0.0
    for arch, count in archs.items():
        torch.manual_seed(0)
        model = build_model(
            arch, in_channels=info.channels, num_classes=info.num_classes, input_size=info.size, mean=list(info.mean),
            std=list(info.std),
        ).eval()  # fmt: skip
        start = time.perf_counter()
        attack = get_attack("patch", **params["attack_params"])
        attack.fit(model, train.x, train.y, PatchThreat(params["sizes"][0]), target=None, seed=plan.seed)
        seconds = time.perf_counter() - start
        total += seconds * per_model * count
        print(f"| {arch} | {seconds:.1f} | {per_model} | {count} | {seconds * per_model * count:.0f} |", flush=True)
    print(f"| **all** | | | {sum(archs.values())} | **{total:.0f} ({total / 60:.0f} min)** |")


if __name__ == "__main__":
    main()
