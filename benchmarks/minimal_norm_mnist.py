"""Minimal-norm curves vs the growing-ball worst case on MNIST, at 8 epsilons per norm, with the cost of each.

For each norm (linf, l2), the registered minimal-norm attacks (fmn, fab, ddn; plus ``fmn`` with
``l2_projection=True`` for l2) run once with the largest epsilon as their bound, and
``evaluation.engine.evaluate`` runs the growing-ball cascade (``--growing-ball``, default PGD-40) at every
epsilon, on the same test points. The model is a store checkpoint (default ``mnist/smallcnn-standard``, trained by
``rbc --threads 1 train -m smallcnn -d mnist --epochs 2 --store S``).

    RBC_DATA_DIR=../shared/data nice -n 10 python benchmarks/minimal_norm_mnist.py --store S --n 300

Writes ``results/benchmarks/minimal_norm_mnist.{parquet,md}`` (per-epsilon rows) and ``..._attacks.parquet``.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import pandas as pd
import torch
from _util import load_average, markdown_table  # noqa: E402

from robustbench_cnn.data import load_split
from robustbench_cnn.evaluation.minimal_norm import compare_minimal_norm, minimal_norm_attacks
from robustbench_cnn.store import load_checkpoint

EPS = {
    "linf": [0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20],
    "l2": [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5],
}


def main(argv: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist/smallcnn-standard")
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--norms", default="linf,l2")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--growing-ball", default="pgd", help="suite or attacks for the per-epsilon cascade")
    parser.add_argument("--out", default="results/benchmarks/minimal_norm_mnist", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, card = load_checkpoint(args.model, args.store, "cpu")
    test = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    rows, attack_rows = [], []
    text = [
        f"# Minimal-norm vs growing ball, MNIST test, {args.model}, n={args.n}, seed {args.seed}, "
        f"{args.threads} thread(s), {platform.machine()}, load {load_average()}",
        "",
    ]
    for norm in [s.strip() for s in args.norms.split(",") if s.strip()]:
        attacks: list = list(minimal_norm_attacks(norm))
        if norm == "l2":
            attacks.append(("fmn", {"l2_projection": True}))
        comp = compare_minimal_norm(
            model,
            test.x,
            test.y,
            norm,
            EPS[norm],
            minimal_attacks=attacks,
            growing_ball=args.growing_ball,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        frame = pd.DataFrame(comp.rows()).assign(model=args.model, load_avg=load_average())
        per_attack = pd.DataFrame(comp.attack_rows()).assign(model=args.model)
        rows.append(frame)
        attack_rows.append(per_attack)
        robust_cols = [c for c in frame.columns if c.startswith("robust_")]
        shown = frame[["eps", "clean_accuracy", "minimal_norm_robust", "growing_ball_robust", "reported_robust"]]
        shown = pd.concat([shown, frame[robust_cols]], axis=1)
        text += [
            f"## {norm}: minimal-norm ({comp.best.attack}, one run, bound {EPS[norm][-1]:g}, "
            f"{comp.best.elapsed_s:.1f} s wall, {comp.best.cpu_s:.1f} s CPU) vs growing ball "
            f"({comp.growing_ball.suite}, {len(EPS[norm])} epsilons, {comp.growing_ball_s:.1f} s wall, "
            f"{comp.growing_ball_cpu_s:.1f} s CPU)",
            "",
            markdown_table(shown, ".3f"),
            markdown_table(per_attack.drop(columns=["model"]), ".3f"),
        ]
    table, attacks_table = pd.concat(rows, ignore_index=True), pd.concat(attack_rows, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out.with_suffix(".parquet"), index=False)
    attacks_table.to_parquet(out.with_name(out.name + "_attacks.parquet"), index=False)
    out.with_suffix(".md").write_text("\n".join(text))
    print("\n".join(text))
    return table, attacks_table


if __name__ == "__main__":
    main()
