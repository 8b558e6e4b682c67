"""Looking for catastrophic overfitting on digits: FGSM-RS and N-FGSM, guard off, one or many settings per call.

Each setting trains an architecture (default fastcnn) on the bundled digits with the recipe's loss and the training
loop of ``defend`` (``training.fit``; the recipe's guard off, no masking probes), measures PGD-10 on the whole digits
test split after every epoch and prints clean and PGD-20 accuracy at the end, the per-epoch PGD-10 accuracy and the
per-epoch training accuracy (on the recipe's own adversarial points). A catastrophic-overfitting collapse shows as
PGD falling to ~0 after it had risen while training accuracy stays high.

    python benchmarks/single_step_digits.py EPS EPOCHS SEED DEFENSE [key=value ...]   # e.g. 0.2 30 0 fgsm-rs alpha=0.5
    python benchmarks/single_step_digits.py 0.2 20 0 fgsm-rs alpha=0.4 --arch wide_resnet --arch-arg depth=10 \
        --arch-arg widen_factor=2 --optimizer sgd --lr 0.2 --batch-size 128
    python benchmarks/single_step_digits.py --trials benchmarks/single_step_digits_trials.json   # many settings

``key=value``: defense parameters (``true``/``false`` or numbers). ``--arch``, ``--arch-arg``, ``--lr``,
``--optimizer``, ``--schedule``, ``--batch-size``, ``--weight-decay``, ``--raw-pixels``: the training settings
(default: digits' ``TrainConfig``). Two interventions on the data (train and test alike): ``--plant BETA`` adds a
class-wise +-BETA pattern (row ``1 + y`` of the 64x64 Hadamard matrix) to images first squeezed into
[BETA, 1 - BETA], the injected discriminative feature of Ortiz-Jimenez et al. 2023 ("Catastrophic overfitting can
be induced with discriminative non-robust features"); ``--upsample N`` resizes the 8x8 images to NxN (bilinear); ``--binarize`` sets
pixels >= 0.5 to 1 and the others to 0 (MNIST-like strokes of full contrast).
A trials file is a JSON list of objects with the keys ``eps, epochs, seed, defense`` and optionally ``params,
arch, arch_kwargs, train`` (TrainConfig fields), ``beta``, ``up``, ``binarize``. Results of the settings tried are in
``docs/single_step_at.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
import torch.nn.functional as F
from scipy.linalg import hadamard

from robustbench_cnn.core.devices import seed_everything
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses import get_defense
from robustbench_cnn.defenses.perturb import pgd_accuracy, pgd_robust
from robustbench_cnn.models import build_model
from robustbench_cnn.training import EpochStats, TrainConfig, fit


def value(text: str) -> Any:
    """``true``/``false`` stay strings (the recipes parse them), numbers become floats (ints where whole), comma
    separated values lists (``hidden=512,512``)."""
    if "," in text:
        return [value(part) for part in text.split(",") if part]
    if text in ("true", "false"):
        return text
    number = float(text)
    return int(number) if number.is_integer() and "." not in text else number


def intervene(x: torch.Tensor, y: torch.Tensor, beta: float, size: int, binarize: bool = False) -> torch.Tensor:
    """The data interventions: binarizing at 0.5, a planted class-wise Hadamard feature of amplitude ``beta``, then
    resizing."""
    if binarize:
        x = (x >= 0.5).float()
    if beta > 0:
        patterns = torch.tensor(hadamard(64), dtype=torch.float32)[1:11].reshape(10, 1, 8, 8)
        x = (1 - 2 * beta) * x + beta + beta * patterns[y]
    if size != x.shape[-1]:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return x


def run(trial: dict[str, Any]) -> str:
    """Train one setting and return its result line."""
    eps, beta, size = float(trial["eps"]), float(trial.get("beta", 0.0)), int(trial.get("up", 8))
    train, test = load_split("digits", "train"), load_split("digits", "test")
    binarize = bool(trial.get("binarize", False))
    x_train, x_test = intervene(train.x, train.y, beta, size, binarize), intervene(test.x, test.y, beta, size, binarize)
    config = TrainConfig.for_dataset(
        "digits", epochs=trial["epochs"], seed=trial["seed"], device="cpu", **trial.get("train", {})
    )
    seed_everything(config.seed)  # the model's initialisation is part of the seeded run, as in train_model
    mean, std = (list(train.info.mean), list(train.info.std)) if config.normalize else (None, None)
    model = build_model(
        trial.get("arch", "fastcnn"), in_channels=1, num_classes=10, input_size=size, mean=mean, std=std,
        **trial.get("arch_kwargs", {}),
    )  # fmt: skip
    recipe = get_defense(trial["defense"], f"linf:{eps}", guard=False, **trial.get("params", {}))
    threat = ThreatModel.parse(f"linf:{eps}")
    pgd, train_acc = [], []

    def monitor(stats: EpochStats, net: torch.nn.Module) -> None:
        _, robust = pgd_robust(net, x_test, test.y, threat, steps=10, seed=0)
        pgd.append(round(float(robust.float().mean()), 2))
        train_acc.append(round(stats.train_accuracy, 2))

    start = time.perf_counter()
    fit(model, x_train, train.y, config, recipe=recipe, callbacks=[monitor], progress=False)
    clean, robust = pgd_accuracy(model, x_test, test.y, threat, steps=20)
    every = max(1, len(pgd) // 30)  # at most ~30 epochs shown
    return (
        f"{json.dumps(trial)} | clean {clean:.3f} pgd20 {robust:.3f} | pgd10/epoch {pgd[::every]} "
        f"train/epoch {train_acc[::every]} | {time.perf_counter() - start:.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("eps", type=float, nargs="?")
    parser.add_argument("epochs", type=int, nargs="?")
    parser.add_argument("seed", type=int, nargs="?")
    parser.add_argument("defense", nargs="?")
    parser.add_argument("params", nargs="*", help="defense parameters key=value")
    parser.add_argument("--trials", help="JSON list of settings (see the module docstring)")
    parser.add_argument("--arch", default="fastcnn")
    parser.add_argument("--arch-arg", action="append", default=[], help="architecture option key=value (a,b: a list)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optimizer")
    parser.add_argument("--schedule")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--raw-pixels", action="store_true", help="no dataset mean/std normalization")
    parser.add_argument("--plant", type=float, default=0.0, help="amplitude of the planted class-wise feature")
    parser.add_argument("--upsample", type=int, default=8, help="resize the 8x8 images to this size")
    parser.add_argument("--binarize", action="store_true", help="pixels >= 0.5 become 1, the others 0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.trials:
        with open(args.trials) as handle:
            trials = json.load(handle)
    else:
        if args.defense is None:
            parser.error("give EPS EPOCHS SEED DEFENSE or --trials FILE")
        training = {
            "lr": args.lr,
            "optimizer": args.optimizer,
            "schedule": args.schedule,
            "batch_size": args.batch_size,
            "weight_decay": args.weight_decay,
            "normalize": False if args.raw_pixels else None,
        }
        trials = [
            {
                "eps": args.eps,
                "epochs": args.epochs,
                "seed": args.seed,
                "defense": args.defense,
                "params": {k: value(v) for k, v in (a.split("=", 1) for a in args.params)},
                "arch": args.arch,
                "arch_kwargs": {k: value(v) for k, v in (a.split("=", 1) for a in args.arch_arg)},
                "train": {k: v for k, v in training.items() if v is not None},
                "beta": args.plant,
                "up": args.upsample,
                "binarize": args.binarize,
            }
        ]
    for trial in trials:
        print(run(trial), flush=True)


if __name__ == "__main__":
    main()
