"""Memory layout on the CPU: NCHW (contiguous) vs channels_last, for every registered CNN.

Each architecture's ``cpu_layout`` (declared on its registration) says which layout its attacks and ``evaluate`` run
it in on the CPU (training stays NCHW); this script measures what that choice rests on: milliseconds per forward
(inference), per input gradient
(what an attack step costs) and per training step (forward, backward, Adam), the two layouts interleaved in the same
process, median of ``--rounds`` rounds, 1 thread by default. The ratio is NCHW time over channels_last time (> 1:
channels_last is faster).

    python benchmarks/cpu_layout.py --threads 1 --csv docs/cpu_layout.csv --md docs/cpu_layout.md
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average, markdown_table

from robustbench_cnn.models import MODELS, build_model, declared_cpu_layout

#: (architecture, channels, input size, batch): the sizes the plans train them at (digits 8x8, MNIST 28x28,
#: CIFAR-10 32x32).
CASES = [
    ("mlp", 1, 8, 256),
    ("lenet5", 1, 8, 256),
    ("fastcnn", 1, 8, 256),
    ("smallcnn", 1, 8, 256),
    ("lenet-jeong", 1, 28, 100),
    ("lenet5", 1, 28, 100),
    ("fastcnn", 1, 28, 100),
    ("smallcnn", 1, 28, 100),
    ("alexnet", 3, 32, 32),
    ("vgg11_bn", 3, 32, 32),
    ("vgg16_bn", 3, 32, 32),
    ("googlenet", 3, 32, 32),
    ("resnet18", 3, 32, 32),
    ("preact_resnet18", 3, 32, 32),
    ("wide_resnet", 3, 32, 32),
    ("densenet121", 3, 32, 32),
    ("mobilenet_v2", 3, 32, 32),
]


def _ms(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def measure(arch: str, channels: int, size: int, batch: int, rounds: int) -> dict:
    """Median ms per forward, input gradient and training step in each layout, interleaved."""
    torch.manual_seed(0)
    x, y = torch.rand(batch, channels, size, size), torch.randint(0, 10, (batch,))
    nchw = build_model(arch, in_channels=channels, num_classes=10, input_size=size)
    layouts = {"nchw": nchw, "cl": copy.deepcopy(nchw).to(memory_format=torch.channels_last)}
    jobs: dict[tuple[str, str], Callable[[], object]] = {}
    for name, model in layouts.items():
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def forward(model=model) -> None:
            model.eval()
            with torch.inference_mode():
                model(x)

        def input_grad(model=model) -> None:
            model.eval()
            xx = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xx), y), xx)

        def train_step(model=model, opt=opt) -> None:
            model.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        jobs.update({(name, "forward"): forward, (name, "input_grad"): input_grad, (name, "train_step"): train_step})
    for job in jobs.values():  # warm-up
        job()
    big = channels == 3
    repeats = 2 if big else 20
    row: dict = {"arch": arch, "input": f"{channels}x{size}x{size}", "batch": batch}
    for what in ("forward", "input_grad", "train_step"):
        times: dict[str, list[float]] = {"nchw": [], "cl": []}
        for _ in range(rounds):
            for name in ("nchw", "cl"):
                times[name].append(_ms(jobs[(name, what)], repeats))
        a, b = statistics.median(times["nchw"]), statistics.median(times["cl"])
        row[f"{what}_ms_nchw"], row[f"{what}_ms_cl"], row[f"{what}_ratio"] = a, b, a / b
    row["declared"] = declared_cpu_layout(arch)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--archs", default=None, help="comma-separated subset of the architectures")
    parser.add_argument("--csv", default="cpu_layout.csv")
    parser.add_argument("--md", default="cpu_layout.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = set(args.archs.split(",")) if args.archs else None
    rows = []
    for arch, channels, size, batch in CASES:
        if arch not in MODELS or (wanted and arch not in wanted):
            continue
        rows.append(measure(arch, channels, size, batch, args.rounds))
        r = rows[-1]
        print(
            f"{arch} {r['input']}: forward {r['forward_ratio']:.2f}x input_grad {r['input_grad_ratio']:.2f}x "
            f"train_step {r['train_step_ratio']:.2f}x (declared {r['declared']})",
            flush=True,
        )
    df = pd.DataFrame(rows)
    df.to_csv(args.csv, index=False)
    header = (
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
        f"load average {load_average()}; ratio = NCHW ms / channels_last ms\n\n"
    )
    with open(args.md, "w") as f:
        f.write(header + markdown_table(df, ".2f"))


if __name__ == "__main__":
    main()
