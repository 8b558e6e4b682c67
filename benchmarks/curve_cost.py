"""Cost and robust accuracy of an 8-epsilon PGD curve: ours (shrinking ball, growing ball) against foolbox.

Per ``--models`` checkpoint (default the store's ``mnist/lenet5-standard`` and ``mnist/lenet5-pgd-at``; the standard
one is trained here for 3 epochs when missing, the PGD-AT one must exist: ``rbc defend --defense pgd-at ...``) on
the first ``--n`` MNIST test images, for each 8-epsilon list of ``--eps`` (linf), the same PGD for every contender:
``--steps`` (10) steps of ``2.5 * eps / steps``, random start, cross-entropy:

- ``foolbox``: one multi-epsilon call ``LinfPGD(steps, rel_stepsize, random_start=True)(fmodel, x, y,
  epsilons=[...])`` (8 independent runs on every point, no early stop);
- ``ours: robustness_curve``: ``get_attack("pgd", ...).robustness_curve(...)`` with its default order for PGD,
  the shrinking ball (:func:`attacks.curve.shrinking_ball`): largest epsilon first, then only the points broken above,
  checked at their projected adversarial example and warm-started there, one fresh retry per run;
- ``ours: growing ball``: the same call with ``order="ascending"``, the engine ``evaluate`` runs (before 2026-12 the
  default of ``robustness_curve``): ascending epsilons, broken points carried forward, warm starts, early stop;
- ``ours: independent per eps``: our PGD called once per epsilon on every point (``Attack.__call__``), the
  independent per-epsilon attack foolbox's call makes, with our early stop.

Cost is counted two ways, side by side in one process: CPU and wall seconds (medians over ``--reps`` interleaved
rounds, seed ``--seed + round`` for every contender), and passes through the model per clean-correct point, counted
by a wrapper module: forward+backward passes (forward calls with gradients on; their rows) and forward-only passes.
``fb_equivalent`` = ``fb + fw * r`` with ``r`` the measured cost of one no-grad forward over one forward+backward
(median of 7, at a random point of the largest ball, our kernels) prices a forward; ``speedup_*`` = foolbox's cost
over the contender's. Robust accuracy: mean over the rounds; ``max_over_fb_pp``: the contender's largest excess over
foolbox's robust accuracy over the 8 epsilons, in percentage points (<= 0: as strong at every epsilon).

    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/store python benchmarks/curve_cost.py --threads 1

Writes ``results/benchmarks/curve_cost.{csv,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average, markdown_table, standard_model
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.functional import make_generator
from robustbench_cnn.core.geometry import random_start
from robustbench_cnn.core.input_gradients import fast_input_gradients
from robustbench_cnn.core.types import ThreatModel

EPS = "0.0375,0.075,0.1125,0.15,0.1875,0.225,0.2625,0.3;0.02,0.04,0.06,0.08,0.1,0.12,0.14,0.16"


class Counted(nn.Module):
    """Counts the rows of every forward call, with gradients on (``fb``) and off (``fw``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.fb = 0
        self.fw = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.fb += int(x.shape[0])
        else:
            self.fw += int(x.shape[0])
        return self.model(x)


def forward_price(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> float:
    """Median CPU time of one no-grad forward over one forward+backward to the input (our kernels)."""
    xa = random_start(x, ThreatModel.parse(f"linf:{eps}"), make_generator(seed, x.device))
    fw, fb = [], []
    for _ in range(7):
        with torch.no_grad():
            t = time.process_time()
            model(xa)
            fw.append(time.process_time() - t)
        xg = xa.clone().requires_grad_(True)
        with fast_input_gradients(model):
            t = time.process_time()
            torch.autograd.grad(F.cross_entropy(model(xg), y), [xg])
            fb.append(time.process_time() - t)
    return statistics.median(fw) / statistics.median(fb)


def run_model(args: argparse.Namespace, name: str, eps_text: str) -> pd.DataFrame:
    import foolbox as fb

    from robustbench_cnn.data import load_split

    model = standard_model(name, args.store, args.data_dir, epochs=3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    counted = Counted(model).eval()
    test = load_split(name.split("/")[0], "test", n=args.n, data_dir=args.data_dir)
    x, y = test.x, test.y
    eps_list = [float(e) for e in eps_text.split(",")]
    rel = 2.5 / args.steps
    pgd = get_attack("pgd", steps=args.steps, rel_stepsize=rel, random_start=True)
    fb_attack = fb.attacks.LinfPGD(steps=args.steps, rel_stepsize=rel, random_start=True)
    fmodel = fb.PyTorchModel(counted, bounds=(0, 1))
    with torch.no_grad():
        clean_correct = model(x).argmax(1) == y
    price = forward_price(model, x, y, max(eps_list), args.seed)

    def foolbox_multi(seed: int) -> list[float]:
        torch.manual_seed(seed)
        _, _, success = fb_attack(fmodel, x, y, epsilons=eps_list)
        return [float((clean_correct & ~s).float().mean()) for s in success]

    def shrinking(seed: int) -> list[float]:
        return [r.robust_accuracy for r in pgd.robustness_curve(counted, x, y, "linf", eps_list, seed=seed)]

    def growing(seed: int) -> list[float]:
        curve = pgd.robustness_curve(counted, x, y, "linf", eps_list, seed=seed, order="ascending")
        return [r.robust_accuracy for r in curve]

    def independent(seed: int) -> list[float]:
        return [pgd(counted, x, y, ThreatModel.parse(f"linf:{e}"), seed=seed).robust_accuracy for e in eps_list]

    contenders = {
        "foolbox: attack(epsilons=8)": foolbox_multi,
        "ours: robustness_curve (shrinking ball)": shrinking,
        "ours: growing ball (order=ascending)": growing,
        "ours: independent per eps": independent,
    }
    names = list(contenders)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    passes: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    accs: dict[str, list[list[float]]] = {k: [] for k in names}
    for rep in range(args.reps):
        for k in names[rep % len(names) :] + names[: rep % len(names)]:
            counted.fb = counted.fw = 0
            t, c = time.perf_counter(), time.process_time()
            accs[k].append(contenders[k](args.seed + rep))
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
            passes[k].append((counted.fb / int(clean_correct.sum()), counted.fw / int(clean_correct.sum())))
    ref = names[0]
    rows = []
    ra_ref = [statistics.mean(a) for a in zip(*accs[ref])]
    cost_ref = {
        "cpu": statistics.median(cpu[ref]),
        "wall": statistics.median(wall[ref]),
        "fbe": statistics.mean(f + w * price for f, w in passes[ref]),
    }
    for k in names:
        ra = [statistics.mean(a) for a in zip(*accs[k])]
        fbp = statistics.mean(f for f, _ in passes[k])
        fwp = statistics.mean(w for _, w in passes[k])
        fbe = fbp + fwp * price
        rows.append(
            {
                "model": name,
                "eps": f"{eps_list[0]:g}..{eps_list[-1]:g}",
                "contender": k,
                "median_cpu_s": statistics.median(cpu[k]),
                "median_wall_s": statistics.median(wall[k]),
                "fb_per_point": fbp,
                "fw_per_point": fwp,
                "fb_equivalent": fbe,
                "speedup_cpu": cost_ref["cpu"] / statistics.median(cpu[k]),
                "speedup_wall": cost_ref["wall"] / statistics.median(wall[k]),
                "speedup_passes": cost_ref["fbe"] / fbe,
                "max_over_fb_pp": 100 * max(a - b for a, b in zip(ra, ra_ref)),
                **{f"ra@{e:g}": a for e, a in zip(eps_list, ra)},
                "forward_price": price,
                "n": len(y),
                "reps": args.reps,
                "steps": args.steps,
                "load_avg": load_average(),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist/lenet5-standard,mnist/lenet5-pgd-at")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", default=EPS, help="8 comma-separated epsilons; several lists separated by ';'")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds (seeds seed .. seed + reps - 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/benchmarks/curve_cost", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = [
        run_model(args, name.strip(), eps.strip())
        for name in args.models.split(",")
        for eps in args.eps.split(";")
        if eps.strip()
    ]
    df = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    cmd = "python benchmarks/curve_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [f"# 8-epsilon PGD-{args.steps} curves (n={args.n}, {args.threads} thread(s))", "", f"`{cmd.strip()}`", ""]
    cost_cols = [
        "contender",
        "median_cpu_s",
        "median_wall_s",
        "fb_per_point",
        "fw_per_point",
        "speedup_cpu",
        "speedup_wall",
        "speedup_passes",
        "max_over_fb_pp",
    ]
    for (model, eps), part in df.groupby(["model", "eps"], sort=False):
        ra_cols = [c for c in part.columns if c.startswith("ra@") and part[c].notna().all()]
        text += [
            f"## {model}, linf eps {eps} (forward priced at {part.forward_price.iloc[0]:.3f} forward+backward)",
            "",
            markdown_table(part[cost_cols], ".3f"),
            markdown_table(part[["contender", *ra_cols]], ".3f"),
        ]
    report = "\n".join(text) + "\n"
    out.with_suffix(".md").write_text(report)
    print(report)
    return df


if __name__ == "__main__":
    main()
