"""Time of a first convolution's input gradient: autograd's (oneDNN) kernel against the ``flip`` and ``fold``
kernels of ``core/input_gradients.py``, over the first-layer shapes of the registry's MNIST and CIFAR nets, at
several batch sizes and thread counts. Each row also says which kernel the fixed rule picks, so the rule can be
checked on a new machine: the picked kernel should never be slower than autograd's.

    python benchmarks/input_gradient_kernels.py --threads 1,2 --batches 64,256,1000

Writes ``results/benchmarks/input_gradient_kernels.{parquet,csv,md}``. Figures are the minimum wall time over
``--reps`` calls after a warm-up (milliseconds); ``max_rel_err`` is the largest difference to autograd's gradient
relative to its largest entry.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average, markdown_table  # noqa: E402
from torch import nn

from robustbench_cnn.core.input_gradients import conv2d_input_grad, input_gradient_kernel

#: (in, out, kernel, stride, padding, side): LeNet-5, fastcnn (Wong et al.), smallcnn, Madry's MNIST net, 3x3 MNIST
#: nets, then CIFAR first layers (WideResNet 3->16, 3->32, ResNet/PreAct/VGG 3->64 at 32 and 64 pixels)
SHAPES = [
    (1, 6, 5, 1, 2, 28),
    (1, 16, 4, 2, 1, 28),
    (1, 32, 5, 1, 2, 28),
    (1, 32, 3, 1, 1, 28),
    (1, 20, 5, 1, 0, 28),
    (1, 64, 3, 1, 1, 28),
    (3, 16, 3, 1, 1, 32),
    (3, 32, 3, 1, 1, 32),
    (3, 64, 3, 1, 1, 32),
    (3, 64, 3, 1, 1, 64),
]


def best_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


def measure(shape: tuple[int, ...], batch: int, reps: int) -> dict:
    cin, cout, k, s, p, side = shape
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p).requires_grad_(False)
    x = torch.rand(batch, cin, side, side, generator=gen)
    grad_out = torch.randn(conv(x).shape, generator=gen)
    w = conv.weight
    mask = [True, False, False]

    def autograd_kernel() -> torch.Tensor:
        return torch.ops.aten.convolution_backward(
            grad_out, x, w, [cout], [s, s], [p, p], [1, 1], False, [0, 0], 1, mask
        )[0]

    ref = autograd_kernel()
    row = {
        "shape": f"{cin}->{cout} k{k} s{s} p{p} {side}x{side}",
        "batch": batch,
        "forward_ms": best_ms(lambda: F.conv2d(x, w, conv.bias, s, p), reps),
        "autograd_ms": best_ms(autograd_kernel, reps),
    }
    errs = []
    for kernel in ("flip", "fold"):
        if kernel == "flip" and (s != 1 or p > k - 1):
            row[f"{kernel}_ms"] = float("nan")
            continue

        def fast(kernel: str = kernel) -> torch.Tensor:
            return conv2d_input_grad(grad_out, w, (side, side), (s, s), (p, p), kernel)

        row[f"{kernel}_ms"] = best_ms(fast, reps)
        errs.append(float((fast() - ref).abs().max() / ref.abs().max()))
    picked = input_gradient_kernel(conv)
    row["rule_picks"] = picked or "autograd"
    row["picked_ms"] = row[f"{picked}_ms"] if picked else row["autograd_ms"]
    row["speedup_of_pick"] = row["autograd_ms"] / row["picked_ms"]
    row["max_rel_err"] = max(errs) if errs else 0.0
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="64,256,1000")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", default="results/benchmarks/input_gradient_kernels", help="path without extension")
    args = parser.parse_args(argv)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for batch in (int(b) for b in args.batches.split(",")):
            for shape in SHAPES:
                rows.append({"threads": threads, **measure(shape, batch, args.reps), "load_avg": load_average()})
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out.with_suffix(".parquet"), index=False)
    df.to_csv(out.with_suffix(".csv"), index=False)
    slower = df[df.speedup_of_pick < 1.0]
    cmd = "python benchmarks/input_gradient_kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        f"# First-layer input-gradient kernels ({platform.processor() or platform.machine()})",
        "",
        f"`{cmd.strip()}`",
        "",
        markdown_table(df, ".3g"),
        f"The rule's pick is slower than autograd's kernel in {len(slower)} of {len(df)} rows"
        + (
            ": "
            + "; ".join(
                f"{r.shape} batch {r.batch} threads {r.threads} ({r.speedup_of_pick:.2f}x)" for r in slower.itertuples()
            )
            if len(slower)
            else "."
        ),
    ]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return df


if __name__ == "__main__":
    main()
