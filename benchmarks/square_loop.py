"""Our Square loop against pyautoattack's ``SquareAttack.attack_single_run``: seconds per run, same points, same seed.

For each model, the clean-correct points of the first ``--n`` digits test images, one run of each side per
repetition, interleaved (library, ours, library, ours, ...), 1 thread: median seconds, ours / library, and whether
the two runs returned the same adversarial examples and query counts (they must: ``tests/test_square_search.py``).
Run from the repository root:

    python benchmarks/square_loop.py --models digits/smallcnn-standard,digits/lenet5-standard,digits/fastcnn-standard

A model missing from ``--store`` (default: the store of ``RBC_HOME``) is trained there first (standard training).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import load_average, markdown_table, standard_model  # noqa: E402
from pyautoattack.square import SquareAttack  # noqa: E402

from robustbench_cnn.attacks.square_search import square_search  # noqa: E402
from robustbench_cnn.core.model_utils import cpu_layout  # noqa: E402
from robustbench_cnn.core.types import Norm  # noqa: E402
from robustbench_cnn.data import load_split  # noqa: E402

LIBRARY_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


def library(model, x, y, norm: Norm, eps: float, queries: int, seed: int):
    square = SquareAttack(model, norm=LIBRARY_NORM[norm], n_queries=queries, eps=eps, seed=seed, resc_schedule=False)
    square.init_hyperparam(x)
    torch.manual_seed(seed)
    with torch.no_grad():
        n_queries, x_best = square.attack_single_run(x, y)
    return n_queries, x_best


def ours(model, x, y, norm: Norm, eps: float, queries: int, seed: int):
    torch.manual_seed(seed)
    run = square_search(model, x, y, norm, eps, queries)
    return run.queries, run.x_best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits/smallcnn-standard,digits/lenet5-standard,digits/fastcnn-standard")
    parser.add_argument("--threats", default="linf:0.1,l2:1.0")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--queries", type=int, default=2500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default=None)
    parser.add_argument("--out", default=None, help="write the table as CSV here (and print it as Markdown)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_split("digits", "test")
    x, y = split.x[: args.n], split.y[: args.n]
    rows = []
    for name in args.models.split(","):
        model = standard_model(name, args.store, None)
        with cpu_layout(model, x.device), torch.no_grad():
            keep = model(x).argmax(1) == y
            xs, ys = x[keep], y[keep]
            for threat in args.threats.split(","):
                norm_text, eps_text = threat.split(":")
                norm, eps = Norm(norm_text), float(eps_text)
                times: dict[str, list[float]] = {"library": [], "ours": []}
                results = {}
                for _ in range(args.reps):
                    for side, run in (("library", library), ("ours", ours)):
                        start = time.perf_counter()
                        results[side] = run(model, xs, ys, norm, eps, args.queries, args.seed)
                        times[side].append(time.perf_counter() - start)
                lib_s, our_s = statistics.median(times["library"]), statistics.median(times["ours"])
                same = all(torch.equal(a, b) for a, b in zip(results["library"], results["ours"], strict=True))
                broken = int((model(results["ours"][1]).argmax(1) != ys).sum())
                rows.append(
                    {
                        "model": name,
                        "threat": threat,
                        "points": len(ys),
                        "broken": broken,
                        "library_s": lib_s,
                        "ours_s": our_s,
                        "ours / library": our_s / lib_s,
                        "same run": same,
                        "load_avg": load_average(),
                    }
                )
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    print(markdown_table(table, ".3f"))


if __name__ == "__main__":
    main()
