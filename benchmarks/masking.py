"""Gradient masking on MNIST: a masked FGSM-trained model, our ``standard`` suite and AutoAttack called directly.

Models (``--arch``, default ``fastcnn``, the Wong et al. MNIST net), trained when missing from the store with
an inline recipe for ``robustbench_cnn.training`` (through ``workflows.train_model``):

- ``fgsm-nors-t<T>``: FGSM adversarial training at linf eps 0.3 *without* random start, one step of
  ``--alpha`` (0.3; any step >= eps is the same step once projected onto the ball), on the cross-entropy of
  ``logits / T`` for both the FGSM step and the training loss, deployed without ``T`` (the mechanism of
  defensive distillation: Papernot et al. 2016; Carlini & Wagner 2016). With ``T = 100`` the deployed logits
  are ~100x too large, the float32 softmax saturates and the cross-entropy gradient is exactly zero at most
  inputs: PGD, FGSM and APGD-CE (cross-entropy) stall, APGD-T (targeted DLR, scale-invariant), FAB-T and Square
  (logit margins) do not.
- ``fgsm-nors-t1`` (control, ``--control``): the same FGSM training at ``T = 1``, the classic catastrophic-
  overfitting recipe. Measured here: FGSM accuracy stays high but PGD-40 breaks every point from the first
  epoch on (a single-step mask, not an iterative one), so it does not give "PGD high, AutoAttack low".

On ``--n`` (500) test points at linf eps 0.3: clean accuracy, FGSM and PGD-40 alone, the ``quick`` and ``standard``
suites via ``evaluate`` (robust accuracy after each attack of the cascade, validity flags), and pyautoattack's
``AutoAttack(version="standard", seed)`` called directly. Acceptance (masked model): standard suite <=
AutoAttack + 0.3 pp, and a masking flag (``zero-gradients``, ``black-box-beats-white-box`` or
``single-step-beats-iterative``) raised.

    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/store python benchmarks/masking.py --threads 1

Writes ``results/benchmarks/masking.{parquet,csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average as _load  # noqa: E402
from _util import markdown_table
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.errors import CheckpointError
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses.perturb import perturb
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.store import checkpoint_name, load_checkpoint
from robustbench_cnn.training import StepContext, TrainConfig, accuracy
from robustbench_cnn.workflows import train_model

MASKING_FLAGS = ("zero-gradients", "black-box-beats-white-box", "single-step-beats-iterative")


class FGSMNoRandomStart:
    """FGSM adversarial training without random start, at temperature ``T`` (a ``training.Recipe``).

    Per batch: ``x' = proj(x + alpha * sign(grad_x CE(f(x) / T, y)))`` (one step from ``x`` itself, in train
    mode), then the loss ``CE(f(x') / T, y)``. The model is deployed as ``f`` (no ``T``). Cost: 2 forward +
    backward passes per batch.
    """

    name = "fgsm-nors"
    last_logits: torch.Tensor | None = None

    def __init__(self, threat: ThreatModel, alpha: float, temperature: float) -> None:
        self.threat, self.alpha, self.temperature = threat, float(alpha), float(temperature)

    def params(self) -> dict[str, Any]:
        return {"threat": str(self.threat), "alpha": self.alpha, "random_start": False, "temperature": self.temperature}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        t = self.temperature
        x_adv = perturb(
            model,
            x,
            self.threat,
            lambda z: F.cross_entropy(z.float() / t, y, reduction="none"),
            steps=1,
            alpha=self.alpha,
            generator=ctx.generator,
            start="none",
            autocast=ctx.autocast,
        )
        with ctx.autocast():
            logits = model(x_adv)
        self.last_logits = logits.detach()
        return F.cross_entropy(logits.float() / t, y)


def get_model(args: argparse.Namespace, temperature: float) -> tuple[nn.Module, str, bool, float]:
    tag = f"t{temperature:g}"
    name = checkpoint_name("mnist", args.arch, FGSMNoRandomStart.name, tag)
    try:
        return load_checkpoint(name, args.store, "cpu")[0].eval(), name, False, 0.0
    except CheckpointError:
        start = time.perf_counter()
        threat = ThreatModel.parse(f"linf:{args.train_eps}")
        recipe = FGSMNoRandomStart(threat, args.alpha, temperature)
        config = TrainConfig.for_dataset("mnist", epochs=args.epochs, device="cpu", seed=args.seed)
        trained = train_model(
            args.arch,
            "mnist",
            config,
            recipe=recipe,
            store=args.store,
            tag=tag,
            data_dir=args.data_dir,
            threat=str(threat),
            progress=False,
        )
        return trained.model.eval(), name, True, time.perf_counter() - start


def autoattack_direct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int, batch_size: int
) -> float:
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device="cpu")
    out = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    x_adv = out[0] if isinstance(out, tuple) else out
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def evaluate_model(
    model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> list[dict[str, Any]]:
    eps = args.eps
    threat = ThreatModel.parse(f"linf:{eps}")
    rows: list[dict[str, Any]] = []

    def add(
        measure: str, value: float, seconds: float, flags: list[str] | None = None, extra: dict | None = None
    ) -> None:
        rows.append(
            {
                "model": name,
                "measure": measure,
                "eps": eps,
                "n": len(y),
                "robust_acc": value,
                "flags": ";".join(flags or []),
                "seconds": round(seconds, 1),
                "load_avg": _load(),
                "extra": json.dumps(extra or {}),
            }
        )
        print(f"{name:32s} {measure:34s} {value:.4f} {seconds:7.1f}s {';'.join(flags or [])} {_load()}", flush=True)

    add("clean accuracy", accuracy(model, x, y), 0.0)
    for attack, params in (("fgsm", {}), ("pgd", {"steps": 40})):
        res = get_attack(attack, **params)(model, x, y, threat, seed=args.seed, batch_size=args.batch_size)
        add(f"{attack}{'-40' if attack == 'pgd' else ''} alone", res.robust_accuracy, res.elapsed_s)
    for suite in ("quick", "standard"):
        start = time.perf_counter()
        ev = evaluate(model, x, y, "linf", [eps], suite, seed=args.seed, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        codes = sorted({f.code for f in ev.flags})
        cum = dict(zip([a.name for a in ev.attacks], [round(c, 4) for c in ev.outcomes[-1].cumulative_robust]))
        add(
            f"{suite} suite (worst case)",
            ev.robust_accuracy(eps),
            seconds,
            codes,
            {"cumulative": cum, "messages": [str(f) for f in ev.flags]},
        )
    start = time.perf_counter()
    aa = autoattack_direct(model, x, y, eps, args.seed, args.batch_size)
    add("AutoAttack standard (pyautoattack direct)", aa, time.perf_counter() - start)
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="fastcnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-eps", type=float, default=0.3)
    parser.add_argument("--alpha", type=float, default=0.3, help="FGSM training step (>= eps: projected to eps)")
    parser.add_argument("--temperature", type=float, default=100.0)
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train and evaluate the T = 1 control",
    )
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/benchmarks/masking", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    test = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    temperatures = [args.temperature] + ([1.0] if args.control and args.temperature != 1.0 else [])
    rows: list[dict[str, Any]] = []
    verdicts: list[str] = []
    for temperature in temperatures:
        model, name, trained, train_s = get_model(args, temperature)
        if trained:
            print(f"trained {name} in {train_s:.0f}s (load {_load()})", flush=True)
        model_rows = evaluate_model(model, name, test.x, test.y, args)
        for r in model_rows:
            r["trained_here_s"] = round(train_s, 1) if trained else None
        rows += model_rows
        by = {r["measure"]: r for r in model_rows}
        std, aa = by["standard suite (worst case)"], by["AutoAttack standard (pyautoattack direct)"]
        masked_flags = [c for c in std["flags"].split(";") if c in MASKING_FLAGS]
        le = std["robust_acc"] <= aa["robust_acc"] + 0.003
        verdicts.append(
            f"- {name}: PGD-40 alone {by['pgd-40 alone']['robust_acc']:.4f}, standard suite {std['robust_acc']:.4f}, "
            f"AutoAttack {aa['robust_acc']:.4f}: standard <= AA + 0.3 pp: {'yes' if le else 'NO'}; masking flag "
            f"raised: {', '.join(masked_flags) if masked_flags else 'none'}"
        )

    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out.with_suffix(".parquet"), index=False)
    df.to_csv(out.with_suffix(".csv"), index=False)
    cmd = "python benchmarks/masking.py " + " ".join(argv if argv is not None else sys.argv[1:])
    shown = df[["model", "measure", "robust_acc", "flags", "seconds", "load_avg"]]
    extras = [f"- {r['model']} / {r['measure']}: {r['extra']}" for r in rows if r["extra"] != "{}"]
    report = (
        f"# Gradient masking on MNIST (linf eps {args.eps}, n={args.n}, seed {args.seed})\n\n`{cmd.strip()}`\n\n"
        + markdown_table(shown)
        + "\n"
        + "\n".join(verdicts)
        + "\n\ncascades:\n\n"
        + "\n".join(extras)
        + "\n"
    )
    out.with_suffix(".md").write_text(report)
    print(report)
    return df


if __name__ == "__main__":
    main()
