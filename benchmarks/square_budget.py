"""The Square check's short budget against AutoAttack on one model, same points, same seed, one process.

The `fast` cascade (APGD-CE, APGD-T on 3 MALT targets, FGSM, square-check) is run with each short budget of the
Square check, then pyautoattack standard once; robust accuracy, seconds and the time ratio per budget. Used to choose
the default short budget (docs/fast_cascade.md). Run from the repository root:

    RBC_DATA_DIR=../shared/data python benchmarks/square_budget.py --store STORE --budgets 1000,2500,5000

The model is `benchmarks/vs_autoattack.py`'s (trained into STORE on first use).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vs_autoattack  # noqa: E402

from robustbench_cnn.data import load_split  # noqa: E402
from robustbench_cnn.evaluation.engine import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-pgd-at", help="a model key of vs_autoattack.py")
    parser.add_argument("--budgets", default="1000,2500,5000")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    build_args = argparse.Namespace(
        store=args.store, data_dir=args.data_dir, adv_epochs=3, adv_subset=20000, seed=0, n=args.n, batch_size=500
    )
    model = vs_autoattack.build(args.model, build_args)
    split = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    rows = []
    for budget in [int(b) for b in args.budgets.split(",")]:
        cascade = [("apgd", {}), ("apgd-mt", {}), ("fgsm", {}), ("square-check", {"n_queries": budget})]
        start = time.perf_counter()
        ev = evaluate(model, split.x, split.y, "linf", [args.eps], cascade, seed=0, batch_size=500)
        rows.append(
            (f"fast, square-check {budget}", float(ev.outcomes[-1].robust.float().mean()), time.perf_counter() - start)
        )
        print(rows[-1], flush=True)
    start = time.perf_counter()
    robust = vs_autoattack.autoattack(model, split.x, split.y, args.eps, "standard", 0, 500)
    aa_s = time.perf_counter() - start
    rows.append(("pyautoattack standard", float(robust.float().mean()), aa_s))
    print("| run | robust % | seconds | time / AutoAttack |\n|---|---|---|---|")
    for name, acc, seconds in rows:
        print(f"| {name} | {100 * acc:.1f} | {seconds:.1f} | {seconds / aa_s:.2f} |")


if __name__ == "__main__":
    main()
