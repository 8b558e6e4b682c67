"""Strength and time of the default cascade against pyautoattack itself, per sample, on the same points.

One process, the same points and the same seed for both. Per model: pyautoattack's ``AutoAttack`` (version
``standard``; ``rand`` for the randomized model) called directly, and ``evaluate(..., DEFAULT_CASCADE)`` (the engine
runs ``fast-rand`` on a randomized model). Reported: clean and robust accuracy of each, the per-sample disagreements
(points AutoAttack breaks that the cascade misses, and the reverse) and the wall-time ratio. Target on every model:
robust <= AutoAttack + 0.3 pp and time <= 0.5x. Both run the model in the memory layout its architecture declares
for the CPU (``evaluate`` switches to it; AutoAttack runs inside the same switch), so the time ratio compares attacks
on the same model (the runs in ``docs/fast_cascade.md`` predate the layouts: both NCHW).

Models, trained when missing from the store (``RBC_HOME`` or ``--store``; cached there, so reruns are cheap), all
``fastcnn`` (Wong et al.'s MNIST net) unless said:

- ``mnist-standard``: standard training, 1 epoch;
- ``mnist-pgd-at``: PGD-AT (Madry et al. 2018) at linf 0.3, ``--adv-epochs`` epochs on ``--adv-subset`` images, eps
  ramped over the first 2 epochs, 5 steps;
- ``mnist-trades``: TRADES (Zhang et al. 2019), beta 6, otherwise as PGD-AT;
- ``mnist-fgsm-masked``: FGSM training without random start at temperature 100 (``benchmarks/masking.py``'s
  recipe): PGD and FGSM stay high while AutoAttack breaks it;
- ``mnist-noisy``: Gaussian-noise training (sigma 0.25), deployed with fresh N(0, 0.25^2) input noise on every
  forward pass (a randomized defense), attacked at linf ``--rand-eps`` (0.1) with AutoAttack's ``rand`` version;
- ``cifar10-resnet18``: torchvision ResNet-18 (CIFAR stem), standard training for ``--cifar-epochs`` on
  ``--cifar-subset`` training images of the JPEG CIFAR-10 copy, attacked at linf 8/255 on ``--cifar-n`` points;
- ``cifar10-resnet18-fgsm-rs``: the same ResNet-18 adversarially trained with FGSM-RS at linf 8/255 at the recipe's
  CIFAR-10 preset (Wong et al. 2020: alpha 1.25 eps = 10/255, SGD with a cyclic lr peaking at 0.2, batch 128, weight
  decay 5e-4) for
  ``--cifar-adv-epochs`` epochs on ``--cifar-adv-subset`` training images (a short CPU training, not the paper's 15
  epochs on 50,000), attacked as above.

    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/store nice -n 10 python benchmarks/vs_autoattack.py --threads 1

Writes ``results/benchmarks/vs_autoattack.{csv,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from _util import load_average, markdown_table
from torch import nn

from robustbench_cnn.core.errors import CheckpointError
from robustbench_cnn.core.model_utils import cpu_layout
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses import DEFENSES
from robustbench_cnn.defenses.presets import apply_preset
from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE, evaluate
from robustbench_cnn.store import checkpoint_name, load_checkpoint
from robustbench_cnn.training import TrainConfig

MODELS = (
    "mnist-standard",
    "mnist-pgd-at",
    "mnist-trades",
    "mnist-fgsm-masked",
    "mnist-noisy",
    "cifar10-resnet18",
    "cifar10-resnet18-fgsm-rs",
)


class NoisyInput(nn.Module):
    """``model(x + sigma * e)``, ``e ~ N(0, I)`` drawn afresh on every call (a randomized defense)."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model, self.sigma = model, float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


def _stored(name: str, store: str | None) -> nn.Module | None:
    try:
        return load_checkpoint(name, store, "cpu")[0].eval()
    except CheckpointError:
        return None


def _mnist_train(args: argparse.Namespace, epochs: int, subset: int | None) -> TrainConfig:
    # Wong et al.'s settings (raw [0, 1] input) as plans/mnist.toml
    return TrainConfig.for_dataset(
        "mnist",
        epochs=epochs,
        device="cpu",
        seed=args.seed,
        lr=5e-3,
        weight_decay=0.0,
        batch_size=100,
        normalize=False,
    )


def build(key: str, args: argparse.Namespace) -> nn.Module:
    """The model ``key`` from the store, trained and stored first when missing."""
    from robustbench_cnn.defenses import defend
    from robustbench_cnn.workflows import train_model

    store, data = args.store, args.data_dir
    if key == "mnist-standard":
        name = checkpoint_name("mnist", "fastcnn", "standard", None)
        return (
            _stored(name, store)
            or train_model(
                "fastcnn", "mnist", _mnist_train(args, 1, None), store=store, data_dir=data, progress=False
            ).model.eval()
        )
    if key in ("mnist-pgd-at", "mnist-trades", "mnist-noisy"):
        recipe, params, threat = {
            "mnist-pgd-at": ("pgd-at", {"steps": 5, "eps_ramp": 2.0}, "linf:0.3"),
            "mnist-trades": ("trades", {"steps": 5, "beta": 6.0}, "linf:0.3"),
            "mnist-noisy": ("gaussian-noise", {"sigma": 0.25}, "linf:0.1"),
        }[key]
        name = checkpoint_name("mnist", "fastcnn", recipe, None)
        model = _stored(name, store)
        if model is None:
            epochs = 1 if recipe == "gaussian-noise" else args.adv_epochs
            subset = None if recipe == "gaussian-noise" else args.adv_subset
            model = defend(
                recipe,
                "fastcnn",
                "mnist",
                threat,
                _mnist_train(args, epochs, subset),
                store=store,
                data_dir=data,
                subset=subset,
                progress=False,
                eval_n=200,
                **params,
            ).model.eval()
        return NoisyInput(model, 0.25).eval() if key == "mnist-noisy" else model
    if key == "mnist-fgsm-masked":
        sys.path.insert(0, str(Path(__file__).parent))
        from masking import FGSMNoRandomStart

        name = checkpoint_name("mnist", "fastcnn", FGSMNoRandomStart.name, "t100")
        model = _stored(name, store)
        if model is None:
            recipe = FGSMNoRandomStart(ThreatModel.parse("linf:0.3"), 0.3, 100.0)
            model = train_model(
                "fastcnn",
                "mnist",
                _mnist_train(args, 2, None),
                recipe=recipe,
                store=store,
                tag="t100",
                data_dir=data,
                threat="linf:0.3",
                progress=False,
            ).model.eval()
        return model
    if key == "cifar10-resnet18":
        name = checkpoint_name("cifar10-jpeg", "resnet18", "standard", None)
        model = _stored(name, store)
        if model is None:
            config = TrainConfig.for_dataset("cifar10", epochs=args.cifar_epochs, device="cpu", seed=args.seed)
            model = train_model(
                "resnet18",
                f"imagefolder:{args.data_dir}/cifar10-jpeg",
                config,
                store=store,
                data_dir=data,
                subset=args.cifar_subset,
                progress=False,
            ).model.eval()
        return model
    if key == "cifar10-resnet18-fgsm-rs":
        name = checkpoint_name("cifar10-jpeg", "resnet18", "fgsm-rs", None)
        model = _stored(name, store)
        if model is None:
            # the recipe's CIFAR-10 preset (the JPEG copy is an imagefolder, which has none), fewer epochs
            threat = ThreatModel.parse_ball("linf:8/255")
            presets = DEFENSES.get("fgsm-rs").presets
            preset = apply_preset(presets, "cifar10", threat, {}, {"epochs": args.cifar_adv_epochs})
            config = TrainConfig.for_dataset("cifar10", **preset.train, device="cpu", seed=args.seed)
            model = defend(
                "fgsm-rs",
                "resnet18",
                f"imagefolder:{args.data_dir}/cifar10-jpeg",
                threat,
                config,
                store=store,
                data_dir=data,
                subset=args.cifar_adv_subset,
                progress=False,
                eval_n=200,
                preset=preset.record,
                **preset.params,
            ).model.eval()
        return model
    raise ValueError(f"unknown model {key!r}: use one of {', '.join(MODELS)}")


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, version: str, seed: int, bs: int):
    """pyautoattack called directly; per-sample robust flags from its own final predictions."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm="Linf", eps=eps, version=version, seed=seed, device="cpu")
    aa.verbose = False
    with cpu_layout(model, "cpu"):  # the memory layout evaluate runs the model in: the same model on both sides
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=bs)
    return y_adv.cpu() == y.cpu()


def compare(key: str, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    model = build(key, args)
    built_s = time.perf_counter() - start
    if key.startswith("cifar10"):
        split = load_split(f"imagefolder:{args.data_dir}/cifar10-jpeg", "test", n=args.cifar_n, data_dir=args.data_dir)
        eps, n = 8 / 255, args.cifar_n
    else:
        split = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
        eps, n = (args.rand_eps if key == "mnist-noisy" else 0.3), args.n
    x, y = split.x, split.y
    version = "rand" if key == "mnist-noisy" else "standard"
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    t0 = time.perf_counter()
    aa_robust = autoattack(model, x, y, eps, version, args.seed, args.batch_size)
    aa_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate(model, x, y, "linf", [eps], DEFAULT_CASCADE, seed=args.seed, batch_size=args.batch_size)
    ours_s = time.perf_counter() - t0
    ours_robust = ev.outcomes[-1].robust.cpu()
    row = {
        "model": key,
        "n": n,
        "eps": round(eps, 4),
        "aa_version": version,
        "clean": clean,
        "aa_robust": float(aa_robust.float().mean()),
        "fast_robust": float(ours_robust.float().mean()),
        "diff_pp": 100 * float(ours_robust.float().mean() - aa_robust.float().mean()),
        "aa_breaks_we_miss": int((~aa_robust & ours_robust).sum()),
        "we_break_aa_misses": int((aa_robust & ~ours_robust).sum()),
        "aa_s": round(aa_s, 1),
        "fast_s": round(ours_s, 1),
        "time_ratio": round(ours_s / aa_s, 3),
        "attacks": ",".join(a.name for a in ev.attacks),
        "flags": ";".join(sorted({f.code for f in ev.flags})),
        "load_avg": load_average(),
        "build_s": round(built_s, 1),
    }
    row["target_met"] = bool(row["diff_pp"] <= 0.3 and row["time_ratio"] <= 0.5)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--n", type=int, default=500, help="MNIST test points (the first n)")
    parser.add_argument("--cifar-n", type=int, default=100, help="CIFAR-10 test points (the first n)")
    parser.add_argument("--rand-eps", type=float, default=0.1)
    parser.add_argument("--adv-epochs", type=int, default=3)
    parser.add_argument("--adv-subset", type=int, default=20000)
    parser.add_argument("--cifar-epochs", type=int, default=1)
    parser.add_argument("--cifar-subset", type=int, default=3000)
    parser.add_argument("--cifar-adv-epochs", type=int, default=5)
    parser.add_argument("--cifar-adv-subset", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-only", action="store_true", help="build (train) the models and stop")
    parser.add_argument("--out", default="results/benchmarks/vs_autoattack", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import os

    args.data_dir = args.data_dir or os.environ.get("RBC_DATA_DIR")
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if args.train_only:
        for key in keys:
            t0 = time.perf_counter()
            build(key, args)
            print(f"{key}: ready in {time.perf_counter() - t0:.0f}s ({load_average()})", flush=True)
        return pd.DataFrame()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for key in keys:  # the table is rewritten after each model, so a stopped run keeps what it measured
        rows.append(compare(key, args))
        df = pd.DataFrame(rows)
        df.to_csv(out.with_suffix(".csv"), index=False)
    cmd = "python benchmarks/vs_autoattack.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = f"`{cmd.strip()}`\n\n" + markdown_table(df.drop(columns=["attacks"]))
    out.with_suffix(".md").write_text(report)
    print(report)
    return df


if __name__ == "__main__":
    main()
