"""Training throughput: the library's loop (``training.fit``) against a plain PyTorch loop, same everything.

Both sides train the same architecture (built fresh with the same seed, normalization inside), on the same
pre-loaded tensors, with the same batch size and the same optimizer (AdamW, lr 3e-3, weight decay 5e-4):

* library: ``fit(model, x, y, TrainConfig(...), progress=True)``, as ``rbc train`` calls it (one-cycle
  schedule, progress bar, loss and accuracy bookkeeping, recipe indirection);
* plain: ``for idx in randperm(n).split(batch): zero_grad(); cross_entropy(model(x[idx]), y[idx]).backward();
  step()``.

The two measurements are interleaved in ABBA order (plain, library, library, plain, ...) after one discarded
warm-up of each, so that load from other processes and any order effect hit both alike; images/s is taken
from the wall time of the whole call (set-up included) and the figure per side is the median over
``--repeats``. The ratio library / plain is printed per model (target: >= 0.95). On a shared machine the
wall-clock ratio is noisy (+-10 % per pair); the process CPU time of each call (all threads, so the progress
bar's refresh thread counts too) is recorded beside it as ``cpu_ratio``. Data: a seeded ``--subset`` of the
MNIST training set, or the bundled digits when MNIST is absent.

    RBC_DATA_DIR=../shared/data python benchmarks/train_throughput.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average as _load  # noqa: E402

from robustbench_cnn.data import is_available, load_split
from robustbench_cnn.models import build_for_dataset
from robustbench_cnn.training import TrainConfig, fit

TARGET = 0.95
LR, WEIGHT_DECAY = 3e-3, 5e-4


def _model(arch: str, info) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_for_dataset(arch, info)


def plain_loop(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, device: torch.device
) -> None:
    """The reference: a textbook PyTorch loop over pre-loaded tensors."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=generator).split(batch_size):
            xb, yb = x[idx].to(device), y[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def library_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> None:
    """``training.fit`` as ``rbc train`` runs it."""
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer="adam", lr=LR, weight_decay=WEIGHT_DECAY, device=str(device)
    )
    fit(model, x, y, config, progress=progress, description="fit")


def timed(call) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``call()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,smallcnn")
    parser.add_argument("--dataset", default=None, help="default: mnist if available, else digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=10_000, help="training images (seeded subset)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6, help="interleaved measurements per side (median)")
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="run fit without its progress bar (default: on, as rbc train)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default="results/benchmarks/train_throughput", help="path without suffix")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    dataset = args.dataset or ("mnist" if is_available("mnist", args.data_dir) else "digits")
    train = load_split(dataset, "train", n=args.subset, data_dir=args.data_dir)
    x, y = train.x, train.y
    device = torch.device(args.device)
    n_images = len(y) * args.epochs
    rows = []
    load_start = _load()
    for arch in [m.strip() for m in args.models.split(",") if m.strip()]:
        # warm-up, discarded: first-call allocations, kernel selection, lazy imports (rich)
        plain_loop(_model(arch, train.info), x, y, 1, args.batch_size, device)
        library_loop(_model(arch, train.info), x, y, 1, args.batch_size, device, args.progress)
        sides = {
            "plain": lambda arch=arch: plain_loop(_model(arch, train.info), x, y, args.epochs, args.batch_size, device),
            "fit": lambda arch=arch: library_loop(
                _model(arch, train.info), x, y, args.epochs, args.batch_size, device, args.progress
            ),
        }
        times: dict[str, list[tuple[float, float]]] = {"plain": [], "fit": []}
        for rep in range(args.repeats):
            for side in ("plain", "fit") if rep % 2 == 0 else ("fit", "plain"):  # ABBA
                times[side].append(timed(sides[side]))
            plain_s = [w for w, _ in times["plain"]]
            lib_s = [w for w, _ in times["fit"]]
            print(
                f"{arch:9s} rep {rep + 1}/{args.repeats}: plain {n_images / plain_s[-1]:8.0f} images/s, "
                f"fit {n_images / lib_s[-1]:8.0f} images/s  (load {_load()})",
                flush=True,
            )
        plain_ips = n_images / statistics.median(plain_s)
        lib_ips = n_images / statistics.median(lib_s)
        ratios = [p / f for p, f in zip(plain_s, lib_s)]  # per pair: lib images/s / plain images/s
        plain_cpu = statistics.median(c for _, c in times["plain"])
        lib_cpu = statistics.median(c for _, c in times["fit"])
        rows.append(
            {
                "model": arch,
                "dataset": dataset,
                "images": len(y),
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
                "progress": args.progress,
                "plain_images_per_s": plain_ips,
                "fit_images_per_s": lib_ips,
                "ratio": lib_ips / plain_ips,
                "ratio_median_of_pairs": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "plain_cpu_s": plain_cpu,
                "fit_cpu_s": lib_cpu,
                "cpu_ratio": plain_cpu / lib_cpu,
                "target": TARGET,
                "meets_target": lib_ips / plain_ips >= TARGET,
                "plain_s": plain_s,
                "fit_s": lib_s,
                "plain_cpu_list_s": [c for _, c in times["plain"]],
                "fit_cpu_list_s": [c for _, c in times["fit"]],
                "device": str(device),
                "threads": torch.get_num_threads(),
                "load_start": load_start,
                "load_end": _load(),
                "torch": torch.__version__,
                "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
            }
        )
    frame = pd.DataFrame(rows)
    print(
        frame[
            [
                "model",
                "images",
                "plain_images_per_s",
                "fit_images_per_s",
                "ratio",
                "ratio_median_of_pairs",
                "ratio_min",
                "ratio_max",
                "cpu_ratio",
                "meets_target",
            ]
        ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    for row in rows:
        print(
            f"ratio fit/plain {row['model']}: {row['ratio']:.3f} (target >= {TARGET}; "
            f"CPU-time ratio {row['cpu_ratio']:.3f})"
        )
    out = Path(args.out)
    out = out.with_suffix("") if out.suffix in (".csv", ".parquet") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_suffix(".csv"), index=False)
    frame.to_parquet(out.with_suffix(".parquet"), index=False)
    print(f"written to {out.with_suffix('.csv')} and {out.with_suffix('.parquet')}; load {load_start} -> {_load()}")
    return frame


if __name__ == "__main__":
    main()
