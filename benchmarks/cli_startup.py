"""Start-up time of ``rbc --help`` beside ``python -c "import torch"`` (the cost ``--help`` no longer pays).

Each case is a fresh interpreter (``subprocess``, wall clock, output discarded), run from the repository root with
the current interpreter, as the ``rbc`` console script runs (``from cli import main; main()``):

- ``python -c pass``: the interpreter alone (the floor);
- ``rbc --help`` and ``rbc train --help``: the CLI's help pages (they import click and the command modules, not
  torch; ``tests/test_structure.py`` checks that);
- ``rbc data list``: a command that runs (imports torch and the data module; for comparison);
- ``python -c "import torch"``: torch alone.

One warm-up run per case, then ``--repeats`` rounds (default 7) with the cases interleaved; the figure is the
median (min and max beside it). The target is ``rbc --help`` < 1 s. Usage::

    python benchmarks/cli_startup.py                      # Markdown table on stdout
    python benchmarks/cli_startup.py --repeats 11 --out benchmarks/results/cli_startup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RBC = "import sys; from cli import main; sys.exit(main())"
CASES: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "rbc --help": ["-c", RBC, "--help"],
    "rbc train --help": ["-c", RBC, "train", "--help"],
    "rbc data list": ["-c", RBC, "data", "list"],
    'python -c "import torch"': ["-c", "import torch"],
}


def run_once(args: list[str]) -> float:
    """Seconds of wall clock for one fresh interpreter running ``args``; a failure raises."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, list[float]]:
    """``repeats`` timings per case after one warm-up each, cases interleaved (the order rotates every round)."""
    names = list(CASES)
    for name in names:
        run_once(CASES[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(run_once(CASES[name]))
    return times


def table(times: dict[str, list[float]]) -> str:
    lines = ["| case | median s | min s | max s |", "|---|---|---|---|"]
    for name, values in times.items():
        lines.append(f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per case (default 7)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args()
    times = measure(args.repeats)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    header = (
        f"rbc start-up, {args.repeats} rounds, median of fresh interpreters; python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}\n\n"
    )
    text = header + table(times)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
