"""Training cost of the defenses: epoch time of standard, FGSM-RS and PGD-AT (k=10) on the same model.

The limits: FGSM-RS at most 2x a standard epoch, PGD-AT (10 steps) at most 11x, the single-step recipes of issue 18
(``atta``, ``n-fgsm``) at most 2.2x. ``--recipes`` picks the recipes; ``--presets`` builds each at its published
settings for the dataset and threat (as ``rbc defend`` does; guard off) instead of the library defaults.
``--autograd-kernels-too`` adds, for each adversarial recipe, a twin whose inner maximisation takes autograd's
first-layer input gradient instead of the faster kernel of ``core/input_gradients.py`` (``NAME/autograd``), so the
kernel's share of the cost is measured side by side. Epoch time is
the loop's work per batch (index, copy, the recipe's loss, backward, optimizer step; no monitor, no
guard). By default (``--mode steps``) the recipes take turns batch by batch on the same batches,
so a change of machine load hits all of them alike; ``--mode loop`` times whole epochs of ``fit``
instead (``EpochStats.seconds``), one recipe after the other. The ratios are medians over ``--reps``
epochs of the per-epoch ratios. Both wall-clock and process CPU time are recorded; ``--limit-on``
picks which ratio the limits check (CPU by default: steadier on a shared machine). Data: MNIST when ``$RBC_DATA_DIR/MNIST`` (or ``--data-dir``) holds it, else the bundled digits.

Where the time goes: an inner PGD step (forward + backward to the input) costs about one standard
training step (forward + backward to the weights), so PGD-AT(10) is about 11 steps and FGSM-RS about 2
steps, plus the random start and projections.

    RBC_DATA_DIR=../shared/data python benchmarks/train_cost.py --subset 10000 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from robustbench_cnn.core.devices import resolve_device
from robustbench_cnn.core.input_gradients import fast_input_gradients
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import is_available, load_split
from robustbench_cnn.defenses import DEFENSES, get_defense
from robustbench_cnn.defenses import perturb as perturb_module
from robustbench_cnn.defenses.presets import apply_preset
from robustbench_cnn.models import build_model
from robustbench_cnn.training import StepContext, TrainConfig, fit

LIMITS = {"standard": 1.0, "fgsm-rs": 2.0, "pgd-at": 11.0, "atta": 2.2, "n-fgsm": 2.2}
AUTOGRAD = "/autograd"


class AutogradKernels:
    """A recipe whose inner maximisation runs with the fast first-layer kernels off (the ``NAME/autograd`` twin)."""

    def __init__(self, recipe) -> None:
        self.recipe = recipe

    def loss(self, model, x, y, ctx):
        stock = functools.partial(fast_input_gradients, enabled=False)
        original = perturb_module.fast_input_gradients
        perturb_module.fast_input_gradients = lambda model, **_: stock(model)
        try:
            return self.recipe.loss(model, x, y, ctx)
        finally:
            perturb_module.fast_input_gradients = original

    def __getattr__(self, name: str):
        return getattr(self.recipe, name)


def build_recipe(name: str, threat: str, dataset: str, presets: bool):
    """The recipe ``name`` on ``threat``: its ``dataset`` preset's parameters when ``presets`` (guard off),
    else the library defaults (PGD-AT at 10 steps)."""
    if name == "standard":
        return get_defense("standard", threat)
    defense = DEFENSES.get(name)
    if presets:
        params = dict(apply_preset(defense.presets, dataset, ThreatModel.parse(threat), {}, {}).params)
    else:
        params = {"steps": 10} if name == "pgd-at" else {}
    if "guard" in defense.defaults:
        params["guard"] = False
    return get_defense(name, threat, **params)


def _steps_interleaved(
    recipes: dict,
    models: dict,
    optimizers: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    reps: int,
    device: torch.device,
) -> tuple[dict, dict]:
    """Per epoch and recipe: summed wall and CPU seconds of the loop's step (index, copy, recipe loss,
    backward, optimizer step), the recipes taking turns on each batch."""
    wall = {n: [] for n in recipes}
    cpu = {n: [] for n in recipes}
    n = len(y)
    steps = math.ceil(n / batch_size)
    for rep in range(reps):
        generator = torch.Generator().manual_seed(rep)
        order = torch.randperm(n, generator=generator)
        w = dict.fromkeys(recipes, 0.0)
        c = dict.fromkeys(recipes, 0.0)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            for name, recipe in recipes.items():
                model, optimizer = models[name], optimizers[name]
                model.train()
                sync(device)
                w0, c0 = time.perf_counter(), time.process_time()
                xb, yb = x[idx].to(device), y[idx].to(device)
                ctx = StepContext(rep, step, steps, 1e-3, generator, contextlib.nullcontext, indices=idx, train_size=n)
                loss = recipe.loss(model, xb, yb, ctx)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sync(device)
                w[name] += time.perf_counter() - w0
                c[name] += time.process_time() - c0
        for name in recipes:
            wall[name].append(w[name])
            cpu[name].append(c[name])
        print(f"epoch {rep + 1}: " + ", ".join(f"{k} {w[k]:.2f} s wall {c[k]:.2f} s cpu" for k in recipes), flush=True)
    return wall, cpu


def _epochs_interleaved(
    recipes: dict,
    models: dict,
    optimizers: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    reps: int,
    device: torch.device,
) -> tuple[dict, dict]:
    """Whole epochs of :func:`robustbench_cnn.training.fit` (``EpochStats.seconds``), recipe after recipe."""
    wall = {n: [] for n in recipes}
    cpu = {n: [] for n in recipes}
    for rep in range(reps):
        for name, recipe in recipes.items():
            config = TrainConfig(
                epochs=1,
                batch_size=batch_size,
                optimizer="adam",
                lr=1e-3,
                schedule="constant",
                device=str(device),
                seed=rep,
            )
            c0 = time.process_time()
            result = fit(models[name], x, y, config, recipe=recipe, progress=False, description=name)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(result.epochs[0].seconds)
            print(f"epoch {rep + 1}: {name} {wall[name][-1]:.2f} s wall {cpu[name][-1]:.2f} s cpu", flush=True)
    return wall, cpu


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fastcnn")
    parser.add_argument("--dataset", default=None, help="default: mnist if available, else digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=None, help="train on a seeded subset of N images")
    parser.add_argument("--reps", type=int, default=2, help="epochs per recipe (the median counts)")
    parser.add_argument(
        "--mode",
        choices=["steps", "loop"],
        default="steps",
        help="steps: recipes interleaved batch by batch (robust to load changes); "
        "loop: whole epochs of the training loop, interleaved epoch by epoch",
    )
    parser.add_argument(
        "--limit-on",
        choices=["cpu", "wall"],
        default="cpu",
        help="which ratio the limits check (default cpu: stable under shared load)",
    )
    parser.add_argument("--recipes", default="standard,fgsm-rs,pgd-at", help="comma-separated; standard first")
    parser.add_argument("--presets", action="store_true", help="each recipe at its dataset preset (guard off)")
    parser.add_argument(
        "--autograd-kernels-too",
        action="store_true",
        help="add NAME/autograd twins: the inner maximisation without the fast first-layer kernels",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threat", default=None, help="default: linf:0.3 (mnist), linf:0.1 (digits)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default="results/benchmarks/train_cost.csv", help=".csv or .parquet")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = args.dataset or ("mnist" if is_available("mnist", args.data_dir) else "digits")
    threat = args.threat or ("linf:0.3" if dataset == "mnist" else "linf:0.1")
    train = load_split(dataset, "train", n=args.subset, data_dir=args.data_dir)
    device = resolve_device(args.device)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    if names[0] != "standard":
        names.insert(0, "standard")
    recipes = {}
    for name in names:
        recipes[name] = build_recipe(name, threat, dataset, args.presets)
        if args.autograd_kernels_too and name != "standard":
            recipes[name + AUTOGRAD] = AutogradKernels(build_recipe(name, threat, dataset, args.presets))
    info = train.info
    models, optimizers = {}, {}
    for name in recipes:
        torch.manual_seed(0)
        models[name] = build_model(
            args.model,
            in_channels=info.channels,
            num_classes=info.num_classes,
            input_size=info.size,
            mean=info.mean,
            std=info.std,
        ).to(device)
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-3, weight_decay=5e-4)
    measure = _steps_interleaved if args.mode == "steps" else _epochs_interleaved
    wall, cpu = measure(recipes, models, optimizers, train.x, train.y, args.batch_size, args.reps, device)
    rows = []
    for name in recipes:
        wall_ratio = statistics.median(w / s for w, s in zip(wall[name], wall["standard"]))
        cpu_ratio = statistics.median(c / s for c, s in zip(cpu[name], cpu["standard"]))
        epoch_s = statistics.median(wall[name])
        rows.append(
            {
                "recipe": name,
                "model": args.model,
                "dataset": dataset,
                "threat": threat,
                "images": len(train),
                "batch_size": args.batch_size,
                "mode": args.mode,
                "reps": args.reps,
                "epoch_s": epoch_s,
                "cpu_s": statistics.median(cpu[name]),
                "images_per_s": len(train) / epoch_s,
                "wall_ratio": wall_ratio,
                "cpu_ratio": cpu_ratio,
                "device": str(device),
                "threads": torch.get_num_threads(),
            }
        )
    frame = pd.DataFrame(rows)
    frame["limit"] = frame["recipe"].str.removesuffix(AUTOGRAD).map(LIMITS)
    frame["within_limit"] = frame[f"{args.limit_on}_ratio"] <= frame["limit"]
    frame["torch"] = torch.__version__
    frame["machine"] = f"{platform.machine()} {platform.processor() or platform.system()}"
    print(
        frame[
            ["recipe", "epoch_s", "cpu_s", "images_per_s", "wall_ratio", "cpu_ratio", "limit", "within_limit"]
        ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False) if out.suffix == ".parquet" else frame.to_csv(out, index=False)
    print(f"written to {out}")
    return frame


if __name__ == "__main__":
    frame = main()
    sys.exit(0 if bool(frame["within_limit"].all()) else 1)
