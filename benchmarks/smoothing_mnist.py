"""Randomized smoothing on MNIST: certified (lower bound) beside attacked (upper bound) accuracy, against Jeong &
Shin 2020's reproduction of Cohen et al. 2019's Gaussian-noise baseline.

1. Trains ``lenet-jeong`` (Jeong & Shin's MNIST LeNet, raw [0, 1] pixels) with the ``gaussian-noise`` defense at
   ``--sigma`` (default 0.25) through ``defenses.defend`` (the loop of ``rbc defend``; its per-epoch monitor runs
   PGD-10 at L2 0.5 on the *base* classifier). Their recipe: SGD lr 0.01, momentum 0.9, weight decay 1e-4, batch
   256, 90 epochs, lr x0.1 every 30. Ours: the same, with the loop's Nesterov SGD and a cosine decay from 0.01
   instead of the steps (the loop has no step schedule), for ``--epochs`` epochs. A checkpoint already in
   ``--store`` under the same tag and epoch count is reused.
2. Runs :func:`robustbench_cnn.evaluation.smoothing.certify_and_attack` on a seeded uniform sample of ``--n`` MNIST
   test images (default 500): CERTIFY with ``--n0`` / ``--N`` / ``--alpha`` (default 100 / 10,000 / 0.001; the
   reference used N = 100,000 on all 10,000 images), then SmoothAdv PGD (``--attack-steps``, ``--noise-samples``)
   and PREDICT with ``--predict-n`` samples on the attack's points at each radius.

With N = 10,000 and alpha = 0.001 no radius above ``sigma * Phi^-1(0.001 ** (1 / 10000))`` = 0.80 (sigma 0.25) can
be certified (the reference's cap at N = 100,000 is 0.95), so the table stops at 0.75.

    RBC_DATA_DIR=../shared/data nice -n 10 python benchmarks/smoothing_mnist.py --threads 1 --store /tmp/smoothstore

Writes ``results/benchmarks/smoothing_mnist.{parquet,md}`` (one row per radius) and
``smoothing_mnist_samples.parquet`` (one row per point).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
import torch
from _util import load_average, markdown_table  # noqa: E402

from robustbench_cnn.core.errors import CheckpointError
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses.train import defend
from robustbench_cnn.evaluation.smoothing import certify_and_attack
from robustbench_cnn.store import load_checkpoint
from robustbench_cnn.training import TrainConfig, accuracy

ARCH, DEFENSE, MONITOR = "lenet-jeong", "gaussian-noise", "l2:0.5"

#: Jeong & Shin 2020 (NeurIPS, "Consistency regularization for certified robustness of smoothed classifiers"),
#: MNIST, "Gaussian" (Cohen et al. 2019) at sigma 0.25, LeNet, 90 epochs, N = 100,000, alpha = 0.001: certified
#: accuracy (%) per radius, the range over the five training seeds whose per-image certify logs their repository
#: publishes (data/certify/mnist/cohen/noise_0.25_{3870,4067,6298,919,9555}), on all 10,000 test images ...
REFERENCE_ALL: dict[float, tuple[float, float]] = {
    0.0: (99.21, 99.30),
    0.25: (98.36, 98.57),
    0.5: (96.59, 96.89),
    0.75: (93.07, 93.20),
}
#: ... and on the same 500 images as here (``load_split("mnist", "test", n=500)``, seed 0), read off those logs.
REFERENCE_SAME: dict[float, tuple[float, float]] = {
    0.0: (98.8, 99.2),
    0.25: (98.2, 98.6),
    0.5: (96.8, 97.6),
    0.75: (93.2, 94.2),
}
NAN_RANGE = (float("nan"), float("nan"))


def _distance(value: float, low: float, high: float) -> float:
    """Percentage points from ``value`` to the range [low, high] (0 inside it, negative below)."""
    return value - high if value > high else min(0.0, value - low)


def train_or_load(args: argparse.Namespace) -> tuple[torch.nn.Module, dict]:
    tag = args.tag or f"bench-s{args.seed}"
    try:
        model, card = load_checkpoint(f"mnist/{ARCH}-{DEFENSE}-{tag}", args.store, "cpu")
        if card.epochs == args.epochs:
            return model.eval(), {"train_s": float(card.extra.get("epoch_time_s", float("nan"))), "reused": True}
    except CheckpointError:
        pass
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=256,
        optimizer="sgd",
        lr=args.lr,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="cosine",
        normalize=False,
        device="cpu",
        seed=args.seed,
    )
    start = time.perf_counter()
    out = defend(
        DEFENSE,
        ARCH,
        "mnist",
        MONITOR,
        config,
        store=args.store,
        tag=tag,
        data_dir=args.data_dir,
        progress=args.progress,
        sigma=args.sigma,
    )
    epochs = out.epochs
    print(markdown_table(epochs[["epoch", "loss", "train_accuracy", "clean_accuracy", "pgd_accuracy", "epoch_s"]]))
    return out.model.eval(), {"train_s": time.perf_counter() - start, "reused": False}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--radii", default="0,0.25,0.5,0.75")
    parser.add_argument("--n", type=int, default=500, help="test images (seeded uniform sample)")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--N", type=int, default=10_000, help="CERTIFY's estimation samples")
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--predict-n", type=int, default=1000, help="PREDICT's samples on the attack's points")
    parser.add_argument("--attack-steps", type=int, default=20)
    parser.add_argument("--noise-samples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=250, help="noisy copies per forward pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default=None, help="checkpoint tag (default bench-sSEED)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default="results/benchmarks/smoothing_mnist", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    model, trained = train_or_load(args)
    for p in model.parameters():
        p.requires_grad_(False)
    full = load_split("mnist", "test", data_dir=args.data_dir)
    clean = accuracy(model, full.x, full.y, batch_size=1000)
    test = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    radii = [float(r) for r in args.radii.split(",")]
    result = certify_and_attack(
        model,
        test.x,
        test.y,
        sigma=args.sigma,
        radii=radii,
        n0=args.n0,
        n=args.N,
        alpha=args.alpha,
        predict_n=args.predict_n,
        attack_steps=args.attack_steps,
        noise_samples=args.noise_samples,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    rows = []
    for rec in result.summary_records():
        all_low, all_high = REFERENCE_ALL.get(rec["radius"], NAN_RANGE)
        same_low, same_high = REFERENCE_SAME.get(rec["radius"], NAN_RANGE)
        certified = 100 * rec["certified_acc"]
        rows.append(
            {
                **rec,
                "certified_pct": certified,
                "certified_ci95": f"{100 * rec['certified_ci_low']:.1f}-{100 * rec['certified_ci_high']:.1f}",
                "reference_10k_pct": f"{all_low:.2f}-{all_high:.2f}",
                "d_reference_10k_pp": _distance(certified, all_low, all_high),
                "reference_same_pct": f"{same_low:.1f}-{same_high:.1f}",
                "d_reference_same_pp": _distance(certified, same_low, same_high),
                "empirical_pct": 100 * rec["empirical_acc"],
                "empirical_ci95": f"{100 * rec['empirical_ci_low']:.1f}-{100 * rec['empirical_ci_high']:.1f}",
                "epochs": args.epochs,
                "train_s": trained["train_s"],
                "certify_s": result.certify_s,
                "attack_s": result.attack_s,
                "clean_pct_10k": 100 * clean,
                "N": args.N,
                "predict_n": args.predict_n,
                "attack_steps": args.attack_steps,
                "noise_samples": args.noise_samples,
                "threads": torch.get_num_threads(),
                "load_avg": load_average(),
                "machine": platform.machine(),
                "torch": torch.__version__,
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_parquet(out.with_suffix(".parquet"), index=False)
    samples = pd.DataFrame(result.sample_records())
    samples.insert(1, "test_index", test.index.numpy())
    samples.to_parquet(out.with_name(out.name + "_samples.parquet"), index=False)
    cols = [
        "radius",
        "certified_pct",
        "certified_ci95",
        "reference_10k_pct",
        "d_reference_10k_pp",
        "reference_same_pct",
        "d_reference_same_pp",
        "empirical_pct",
        "empirical_ci95",
        "gap",
        "inconsistent",
        "inconsistent_allowed",
        "certified_abstained",
        "flags",
    ]
    table = markdown_table(frame[cols], ".2f")
    head = (
        f"lenet-jeong + gaussian-noise sigma {args.sigma}, {args.epochs} epochs ({trained['train_s']:.0f} s"
        f"{', reused' if trained['reused'] else ''}); clean accuracy of the base classifier on 10,000 test images "
        f"{100 * clean:.2f}%; n = {args.n}, n0 = {args.n0}, N = {args.N}, alpha = {args.alpha}, PREDICT n = "
        f"{args.predict_n}, SmoothAdv {args.attack_steps} steps x {args.noise_samples} noise samples; certify "
        f"{result.certify_s:.0f} s, attack + predict {result.attack_s:.0f} s; {torch.get_num_threads()} thread(s), "
        f"load {load_average()}\n\n"
    )
    out.with_suffix(".md").write_text(head + table)
    print(head + table, flush=True)
    return frame


if __name__ == "__main__":
    main()
