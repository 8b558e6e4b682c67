"""Single-step adversarial training over seeds: does the default single-step recipe avoid catastrophic overfitting?

Issue 18's target: MNIST, linf 0.3, fastcnn, 10 epochs, the recipe at its defaults (its MNIST preset, as
``rbc defend`` applies it): >= 10 of 12 seeds with standard-suite robust accuracy >= 80% and clean >= 98%, median
robust >= 82%, at <= 2.2x the time of a standard epoch.

Each seed runs the workflow of ``rbc defend`` (:func:`robustbench_cnn.pipeline.defend.defend_and_evaluate`): training
with the monitor's masking probes, then the default cascade on ``--n`` seeded held-out test points. Clean accuracy is
on the whole test split (the card's). Each seed's row is written to ``--csv`` as soon as it finishes, so partial runs
survive; ``--md`` gets the table, the pass count and the median. The cost ratio is measured beside it: CPU seconds
per training batch (``time.process_time``, 1 thread) of the recipe's loss + backward + step against a standard
batch, interleaved rounds, median.

    RBC_DATA_DIR=../shared/data nice -n 10 python benchmarks/single_step_seeds.py --defense n-fgsm --seeds 0-11 \
        --n 1000 --threads 1 --store /tmp/ss --csv docs/single_step_at.csv --md docs/single_step_at.md
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average, markdown_table  # noqa: E402

from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses import DEFENSES, get_defense
from robustbench_cnn.defenses.presets import apply_preset
from robustbench_cnn.models import build_model
from robustbench_cnn.pipeline.defend import defend_and_evaluate
from robustbench_cnn.training import StepContext, TrainConfig

THREAT = "linf:0.3"


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _kv(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (item.split("=", 1) for item in filter(None, text.split(",")))}


def batch_cost_ratio(
    defense: str, params: dict, train: dict, data_dir: str | None, rounds: int = 5, batches: int = 10
) -> dict:
    """CPU seconds per training batch of ``defense`` over a standard batch (median of interleaved rounds)."""
    threat = ThreatModel.parse_ball(THREAT)
    data = load_split("mnist", "train", n=int(train.get("batch_size", 100)) * batches, seed=0, data_dir=data_dir)
    bs = int(train.get("batch_size", 100))
    model = build_model("fastcnn", in_channels=1, num_classes=10, input_size=28)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    recipe = get_defense(defense, threat, **params)
    gen = torch.Generator().manual_seed(0)
    import contextlib

    def ctx(step: int) -> StepContext:
        rows = torch.arange(step * bs, (step + 1) * bs)  # the batch's training points (atta keeps a state each)
        return StepContext(5, step, 600, 1e-3, gen, contextlib.nullcontext, indices=rows, train_size=bs * batches)

    def run(loss_fn) -> float:
        t = time.process_time()
        for i in range(batches):
            x, y = data.x[i * bs : (i + 1) * bs], data.y[i * bs : (i + 1) * bs]
            opt.zero_grad(set_to_none=True)
            loss_fn(x, y, i).backward()
            opt.step()
        return (time.process_time() - t) / batches

    model.train()
    std, adv = [], []
    for _ in range(rounds):
        std.append(run(lambda x, y, i: F.cross_entropy(model(x), y)))
        adv.append(run(lambda x, y, i: recipe.loss(model, x, y, ctx(i))))
    s, a = statistics.median(std), statistics.median(adv)
    return {"standard_batch_cpu_s": s, "recipe_batch_cpu_s": a, "ratio": a / s}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defense", default="n-fgsm")
    parser.add_argument("--seeds", type=_seeds, default=_seeds("0-11"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000, help="held-out points of the final default-cascade evaluation")
    parser.add_argument("--param", type=_kv, default={}, help="defense parameters beyond the preset, e.g. noise=2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--csv", default="docs/single_step_at.csv")
    parser.add_argument("--md", default="docs/single_step_at.md")
    parser.add_argument(
        "--table-glob", default=None, help="build the Markdown table from every CSV matching this (parallel workers)"
    )
    parser.add_argument("--no-cost", action="store_true", help="skip the per-batch cost ratio")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/single_step_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:])
    threat = ThreatModel.parse_ball(THREAT)
    cls = DEFENSES.get(args.defense)
    applied = apply_preset(cls.presets, "mnist", threat, dict(args.param), {"epochs": args.epochs})
    csv = Path(args.csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    cost = None if args.no_cost else batch_cost_ratio(args.defense, applied.params, applied.train, args.data_dir)
    for seed in args.seeds:
        if len(done) and seed in set(done["seed"]):
            continue
        config = TrainConfig.for_dataset("mnist", device="cpu", seed=seed, **applied.train)
        recipe = get_defense(args.defense, threat, **applied.params)
        start = time.perf_counter()
        out = defend_and_evaluate(
            recipe,
            "fastcnn",
            "mnist",
            config,
            final_n=args.n,
            out=Path(args.store or "/tmp") / "final_eval" / f"{args.defense}-s{seed}",  # not into the repository
            preset=applied.record,
            store=args.store,
            data_dir=args.data_dir,
            progress=False,
            tag=f"s{seed}",
        )
        d, final = out.defended, out.final or {}
        masking = (d.card.extra.get("monitor_masking") or {}).get("events") or []
        rows.append(
            {
                "seed": seed,
                "clean_pct": 100 * d.clean_accuracy,
                "suite_pct": 100 * final.get("robust_accuracy", float("nan")),
                "suite_ci95": "-".join(f"{100 * v:.1f}" for v in final.get("ci95", [])),
                "suite_n": final.get("n"),
                "monitor_pgd10_pct": 100 * d.pgd_accuracy,
                "pass": d.clean_accuracy >= 0.98 and final.get("robust_accuracy", 0) >= 0.80,
                "guard_events": ";".join(f"{e['event']}@{e['epoch']}" for e in d.guard_events),
                "masking_events": len(masking),
                "warnings": len(out.warnings),
                "epoch_s_mean": float(d.epochs["epoch_s"].mean()),
                "train_time_s": float(d.card.train_time_s),
                "wall_s": time.perf_counter() - start,
                "load_avg": load_average(),
            }
        )
        frame = pd.DataFrame(rows)
        tmp = csv.with_name(f".{csv.name}.tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, csv)
        table = frame
        if args.table_glob:
            table = pd.concat([pd.read_csv(p) for p in sorted(glob.glob(args.table_glob))]).sort_values("seed")
        write_md(table, args, command, applied.describe(), cost)
        print(frame.tail(1).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def write_md(frame: pd.DataFrame, args: argparse.Namespace, command: str, preset: str, cost: dict | None) -> None:
    passed = int(frame["pass"].sum())
    median = float(frame["suite_pct"].median())
    lines = [
        f"# Single-step AT on MNIST: {args.defense}, fastcnn, {THREAT}, {args.epochs} epochs, over seeds",
        "",
        f"`RBC_DATA_DIR=/work/shared/data nice -n 10 {command}`",
        "",
        f"{preset}. Machine: {platform.machine()}, {args.threads} thread(s), 2 cores shared with other jobs "
        "(load average per row).",
        "",
        f"**{passed} of {len(frame)} seeds** reach clean >= 98% and default-cascade (standard suite) robust >= 80%; "
        f"median robust **{median:.1f}%** (target: >= 10 of 12, median >= 82%). Suite on {args.n} seeded held-out "
        "test points (95% Clopper-Pearson CI), clean on all 10,000.",
        "",
    ]
    if cost:
        lines += [
            f"Cost: {cost['recipe_batch_cpu_s'] * 1000:.1f} ms CPU per batch vs {cost['standard_batch_cpu_s'] * 1000:.1f}"
            f" ms for a standard batch: **{cost['ratio']:.2f}x** (target <= 2.2x; median of 5 interleaved rounds of 10 "
            "batches, `time.process_time`, same batch size and model).",
            "",
        ]
    lines.append(markdown_table(frame, ".2f"))
    Path(args.md).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
