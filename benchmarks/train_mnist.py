"""Standard training on MNIST through the library: test accuracy on the full 10k test set and training time.

Trains ``lenet5`` and ``smallcnn`` for 5 epochs each with the MNIST defaults of ``rbc train``
(``TrainConfig.for_dataset("mnist")``, see ``DATASET_DEFAULTS``) via ``workflows.train_model``, i.e. exactly
what ``rbc train --model M --dataset mnist`` does. Targets: lenet5 >= 99.0 %, smallcnn >= 99.2 %.
``--resnet18-cifar`` adds a smoke run: ``resnet18`` on ``imagefolder:cifar10-jpeg``, 2,000 training images,
1 epoch (accuracy is expected to be low; the row shows that it trains and how long it takes).

The table (one row per model; rewritten after each model, so a partial run keeps its rows) goes to
``results/benchmarks/train_mnist.csv`` and ``.parquet``. Checkpoints go to ``--store`` (else ``$RBC_HOME``).

    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/bench_store python benchmarks/train_mnist.py --threads 1
    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/bench_store python benchmarks/train_mnist.py --threads 1 \\
        --models none --resnet18-cifar --append
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from _util import load_average as _load  # noqa: E402

from robustbench_cnn.training import TrainConfig
from robustbench_cnn.workflows import train_model

#: Minimum test accuracy on the full MNIST test set after the default 5 epochs.
TARGETS = {"lenet5": 0.990, "smallcnn": 0.992}


def _row(
    arch: str,
    dataset: str,
    config: TrainConfig,
    subset: int | None,
    tag: str | None,
    store: str | None,
    data_dir: str | None,
    progress: bool,
) -> dict[str, object]:
    load_before = _load()
    t0 = time.perf_counter()
    trained = train_model(
        arch, dataset, config, store=store, tag=tag, subset=subset, data_dir=data_dir, progress=progress
    )
    wall = time.perf_counter() - t0
    target = TARGETS.get(arch) if dataset == "mnist" else None
    last = trained.result.epochs[-1]
    return {
        "model": arch,
        "dataset": dataset,
        "checkpoint": trained.card.name,
        "train_images": trained.card.extra["train_size"],
        "test_images": trained.card.extra["test_size"],
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "schedule": config.schedule,
        "augment": config.augment,
        "test_accuracy": trained.test_accuracy,
        "final_train_accuracy": last.train_accuracy,
        "final_train_loss": last.loss,
        "target": target,
        "meets_target": None if target is None else trained.test_accuracy >= target,
        "train_s": trained.result.seconds,  # the loop's own time (fit), data loading excluded
        "wall_s": wall,  # load data + train + evaluate + save
        "images_per_s": sum(e.images for e in trained.result.epochs) / trained.result.seconds,
        "device": trained.result.device,
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": _load(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
    }


def _write(rows: list[dict[str, object]], out: Path, append: bool = False) -> None:
    frame = pd.DataFrame(rows)
    if append and out.with_suffix(".parquet").exists():  # keep other models' rows, replace this run's
        old = pd.read_parquet(out.with_suffix(".parquet"))
        keep = ~old.set_index(["model", "dataset"]).index.isin(frame.set_index(["model", "dataset"]).index)
        frame = pd.concat([old[keep], frame], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    frame.to_parquet(out.with_suffix(".parquet"), index=False)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,smallcnn", help="comma-separated, or 'none'")
    parser.add_argument("--epochs", type=int, default=None, help="default: the MNIST default (5)")
    parser.add_argument(
        "--resnet18-cifar",
        action="store_true",
        help="also train resnet18 on imagefolder:cifar10-jpeg (--cifar-subset images, 1 epoch)",
    )
    parser.add_argument("--cifar-subset", type=int, default=2000)
    parser.add_argument("--cifar-epochs", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="default: $RBC_DATA_DIR")
    parser.add_argument("--store", default=None, help="model store (default: $RBC_HOME)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--progress", action="store_true", help="show progress bars (on stderr)")
    parser.add_argument("--out", default="results/benchmarks/train_mnist", help="path without suffix")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of other models already in the table (rows of the same model and dataset are replaced)",
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out = out.with_suffix("") if out.suffix in (".csv", ".parquet") else out
    models = [] if args.models.strip().lower() == "none" else [m.strip() for m in args.models.split(",") if m.strip()]
    rows: list[dict[str, object]] = []
    for arch in models:
        config = TrainConfig.for_dataset("mnist", epochs=args.epochs, device=args.device)
        rows.append(_row(arch, "mnist", config, None, None, args.store, args.data_dir, args.progress))
        r = rows[-1]
        print(
            f"{arch:9s} mnist test acc {r['test_accuracy']:.4f} (target {r['target']}) "
            f"train {r['train_s']:.1f} s, wall {r['wall_s']:.1f} s, {r['images_per_s']:.0f} images/s",
            flush=True,
        )
        _write(rows, out, args.append)
    if args.resnet18_cifar:
        config = TrainConfig.for_dataset("imagefolder", epochs=args.cifar_epochs, device=args.device)
        rows.append(
            _row(
                "resnet18",
                "imagefolder:cifar10-jpeg",
                config,
                args.cifar_subset,
                f"subset{args.cifar_subset}",
                args.store,
                args.data_dir,
                args.progress,
            )
        )
        r = rows[-1]
        print(
            f"resnet18  cifar10-jpeg ({args.cifar_subset} images, {args.cifar_epochs} epoch) test acc "
            f"{r['test_accuracy']:.4f}, train {r['train_s']:.1f} s, wall {r['wall_s']:.1f} s",
            flush=True,
        )
        _write(rows, out, args.append)
    if not rows:
        parser.error("nothing to run: give --models and/or --resnet18-cifar")
    frame = pd.DataFrame(rows)
    cols = [
        "model",
        "dataset",
        "train_images",
        "epochs",
        "test_accuracy",
        "target",
        "meets_target",
        "train_s",
        "wall_s",
        "images_per_s",
        "threads",
        "load_before",
        "load_after",
    ]
    print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"written to {out.with_suffix('.csv')} and {out.with_suffix('.parquet')}")
    missed = frame[frame["meets_target"] == False]  # noqa: E712  (None rows have no target)
    if len(missed):
        print(f"MISSED TARGET: {', '.join(missed['model'])}", file=sys.stderr)
    return frame


if __name__ == "__main__":
    main()
