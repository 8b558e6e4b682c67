"""Single-step AT variants on MNIST for issue 18, item 1: quick one-seed probes of ideas beyond the recipes' parameters.

The registered recipe (``n-fgsm`` by default, ``--defense fgsm-rs``) trained by the project's loop
(``training.fit``) at the MNIST linf preset of ``rbc defend`` (fastcnn on raw pixels, Wong et al.'s schedule:
10 epochs, batch 100, Adam with a cyclic lr peaking at 5e-3; N-FGSM noise 1 eps, step eps, eps ramped over 5 epochs),
guard and masking probes off, with the variants as options: ``--noise``, ``--alpha`` (in eps), ``--ramp``,
``--train_eps`` (train at a larger eps than the 0.3 evaluated), ``--ema`` (evaluate an exponential moving average of
the weights, updated before every step). PGD-10 on 500 test points after every epoch; at the end clean accuracy on
the 10,000 test images and the default cascade (``fast``) at linf 0.3 on ``--n`` seeded test points. One JSON line
per run is appended to ``--out``. Results: docs/single_step_at.md ("Further variants").

    RBC_DATA_DIR=../shared/data python benchmarks/single_step_variants.py --seed 0 --noise 0.5 --tag n05
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.devices import seed_everything
from robustbench_cnn.core.model_utils import batched_logits
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses import get_defense
from robustbench_cnn.defenses.perturb import pgd_robust
from robustbench_cnn.defenses.presets import WONG_MNIST_SCHEDULE
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.models import build_model
from robustbench_cnn.training import EpochStats, StepContext, TrainConfig, fit


class WithEMA:
    """``recipe``'s loss; before each step, the moving average ``ema`` takes in the weights the last step left
    (decay ``min(decay, (1 + t) / (10 + t))`` at step ``t``), so it lags the trained model by one step."""

    def __init__(self, recipe: Any, ema: nn.Module, decay: float) -> None:
        self.recipe, self.ema, self.decay = recipe, ema, decay

    def __getattr__(self, name: str) -> Any:  # name, params, last_logits, ...: the recipe's
        return getattr(self.recipe, name)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        t = ctx.epoch * ctx.steps_per_epoch + ctx.step
        decay = min(self.decay, (1 + t) / (10 + t))
        with torch.no_grad():
            for kept, live in zip(self.ema.parameters(), model.parameters()):
                kept.mul_(decay).add_(live, alpha=1 - decay)
        return self.recipe.loss(model, x, y, ctx)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--defense", default="n-fgsm", help="n-fgsm | fgsm-rs")
    p.add_argument("--noise", type=float, default=1.0, help="n-fgsm's noise, in eps")
    p.add_argument("--alpha", type=float, default=1.0, help="the step, in eps")
    p.add_argument("--ramp", type=float, default=5.0, help="n-fgsm's eps ramp, in epochs")
    p.add_argument("--train_eps", type=float, default=0.3)
    p.add_argument("--ema", type=float, default=0.0, help="decay of the weights' moving average (0: none)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", default="single_step_variants.jsonl")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    data = os.environ.get("RBC_DATA_DIR")
    train, test = load_split("mnist", "train", data_dir=data), load_split("mnist", "test", data_dir=data)
    ev = load_split("mnist", "test", n=a.n, seed=1234, data_dir=data)
    mon = load_split("mnist", "test", n=500, seed=99, data_dir=data)
    config = TrainConfig.for_dataset("mnist", **{**WONG_MNIST_SCHEDULE, "epochs": a.epochs}, seed=a.seed, device="cpu")
    seed_everything(config.seed)  # the model's initialisation is part of the seeded run, as in train_model
    model = build_model("fastcnn", in_channels=1, num_classes=10, input_size=28)
    params: dict[str, Any] = {"alpha": a.alpha * a.train_eps}
    if a.defense == "n-fgsm":
        params.update(noise=a.noise, eps_ramp=a.ramp)
    recipe = get_defense(a.defense, f"linf:{a.train_eps}", guard=False, **params)
    ema = copy.deepcopy(model) if a.ema else None
    evaluated = ema if ema is not None else model
    threat = ThreatModel.parse("linf:0.3")
    hist: list[tuple[int, float, float]] = []

    def monitor(stats: EpochStats, _: nn.Module) -> None:
        _, robust = pgd_robust(evaluated, mon.x, mon.y, threat, steps=10, seed=0)
        hist.append((stats.epoch, round(stats.train_accuracy, 3), round(float(robust.float().mean()), 3)))
        print(hist[-1], flush=True)

    t0 = time.time()
    fit(
        model,
        train.x,
        train.y,
        config,
        recipe=WithEMA(recipe, ema, a.ema) if ema else recipe,
        callbacks=[monitor],
        progress=False,
    )
    train_s = time.time() - t0
    evaluated.eval()
    with torch.no_grad():
        clean = float((batched_logits(evaluated, test.x, 1000).argmax(1) == test.y).float().mean())
    t1 = time.time()
    rob = evaluate(evaluated, ev.x, ev.y, "linf", [0.3], "fast", seed=0).robust_accuracy(0.3) * 100
    res = dict(
        vars(a),
        clean=round(100 * clean, 2),
        fast=round(rob, 2),
        pgd10_last=hist[-1][2],
        hist=hist,
        train_s=round(train_s),
        eval_s=round(time.time() - t1),
    )
    print(json.dumps(res), flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
