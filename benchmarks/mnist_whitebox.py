"""White-box acceptance figures on MNIST: a standard LeNet-5 against PGD, targeted PGD, FGSM and the suite.

Targets (the white-box issue), on the first ``--n`` (1,000) points of the seeded MNIST test subset:

- clean accuracy > 98.5% (LeNet-5 trained ``--epochs`` epochs with the library's ``train_model``, saved as
  ``mnist/lenet5-standard`` in the store when missing);
- PGD-40, linf eps 0.3 (step 2.5 eps / 40, random start): robust accuracy < 1%;
- targeted PGD-40 with random targets (policy ``random``), linf eps 0.3: targeted success > 95% of the
  attacked points (clean-correct, target != label);
- FGSM, linf eps 0.25: error rate (misclassified after the attack, over all points; Goodfellow et al. report
  89.4% for a shallow softmax and 87.2%/99.9% for maxout nets) and success rate (over clean-correct points);
- the ``standard`` suite (PGD-40, APGD-CE, APGD-T, FAB-T, Square 5000) at linf eps 0.3 on ``--suite-n``
  points: robust accuracy (must be <= PGD-40's), with the validity flags.

    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/store python benchmarks/mnist_whitebox.py --threads 1

Writes ``results/benchmarks/mnist_whitebox.{parquet,csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from _util import load_average as _load_avg  # noqa: E402
from _util import markdown_table

from robustbench_cnn.attacks import choose_targets, get_attack
from robustbench_cnn.core.errors import CheckpointError
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.store import checkpoint_name, load_checkpoint
from robustbench_cnn.training import TrainConfig, accuracy
from robustbench_cnn.workflows import train_model


def get_model(arch: str, epochs: int, store: str | None, data_dir: str | None, seed: int):
    """The standard checkpoint ``mnist/<arch>-standard`` from the store, trained here when missing."""
    name = checkpoint_name("mnist", arch, "standard")
    try:
        model, card = load_checkpoint(name, store, "cpu")
        return model.eval(), card.clean_accuracy, False
    except CheckpointError:
        config = TrainConfig.for_dataset("mnist", epochs=epochs, device="cpu", seed=seed)
        trained = train_model(arch, "mnist", config, store=store, data_dir=data_dir, progress=False)
        return trained.model.eval(), trained.test_accuracy, True


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (when trained here)")
    parser.add_argument("--n", type=int, default=1000, help="test points for PGD / targeted PGD / FGSM")
    parser.add_argument("--suite-n", type=int, default=1000, help="test points for the standard suite (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--store", default=None, help="model store (default $RBC_HOME)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/benchmarks/mnist_whitebox", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    model, card_acc, trained = get_model(args.arch, args.epochs, args.store, args.data_dir, args.seed)
    train_s = time.perf_counter() - t0
    test = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    x, y = test.x, test.y
    clean = accuracy(model, x, y)
    full_test = load_split("mnist", "test", data_dir=args.data_dir)
    clean_full = accuracy(model, full_test.x, full_test.y)
    base = {
        "model": f"mnist/{args.arch}-standard",
        "n": len(y),
        "seed": args.seed,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
    }
    rows: list[dict] = []

    def add(
        measure: str,
        attack: str,
        eps: float,
        value: float,
        target: str,
        ok: bool | None,
        seconds: float,
        n: int | None = None,
        extra: dict | None = None,
    ) -> None:
        verdict = "" if ok is None else ("yes" if ok else "NO")
        rows.append(
            {
                **base,
                "n": n if n is not None else len(y),
                "measure": measure,
                "attack": attack,
                "eps": eps,
                "value": value,
                "target": target,
                "pass": verdict,
                "seconds": round(seconds, 2),
                "load_avg": _load_avg(),
                "extra": json.dumps(extra or {}),
            }
        )

    add(
        "clean accuracy (full 10k test)",
        "-",
        0.0,
        clean_full,
        "> 0.985",
        clean_full > 0.985,
        train_s,
        n=len(full_test.y),
        extra={"trained_here": trained, "card_clean_accuracy": card_acc},
    )
    add("clean accuracy", "-", 0.0, clean, "", None, 0.0)

    threat = ThreatModel.parse("linf:0.3")
    pgd = get_attack("pgd", steps=40)
    res = pgd(model, x, y, threat, seed=args.seed, batch_size=args.batch_size)
    add(
        "robust accuracy",
        "pgd-40",
        0.3,
        res.robust_accuracy,
        "< 0.01",
        res.robust_accuracy < 0.01,
        res.elapsed_s,
        extra={"params": res.params, "max_linf": float(res.perturbation_norm.max())},
    )

    with torch.no_grad():
        logits = model(x)
    targets = choose_targets("random", logits, y, logits.shape[1], torch.Generator().manual_seed(args.seed))
    res_t = pgd(model, x, y, threat, targets=targets, seed=args.seed, batch_size=args.batch_size)
    attacked = res_t.clean_correct & (targets != y)
    t_success = float(res_t.success[attacked].float().mean())
    add(
        "targeted success (random targets)",
        "pgd-40 targeted",
        0.3,
        t_success,
        "> 0.95",
        t_success > 0.95,
        res_t.elapsed_s,
        extra={"attacked": int(attacked.sum()), "max_linf": float(res_t.perturbation_norm.max())},
    )

    fgsm = get_attack("fgsm")
    res_f = fgsm(model, x, y, ThreatModel.parse("linf:0.25"), seed=args.seed, batch_size=args.batch_size)
    error = float((res_f.pred_adv != y).float().mean())
    add("error rate (misclassified after attack)", "fgsm", 0.25, error, "", None, res_f.elapsed_s)
    add("success rate (over clean-correct)", "fgsm", 0.25, res_f.success_rate, "", None, res_f.elapsed_s)

    if args.suite_n:
        sub = load_split("mnist", "test", n=args.suite_n, data_dir=args.data_dir)
        start = time.perf_counter()
        ev = evaluate(model, sub.x, sub.y, "linf", [0.3], "standard", seed=args.seed, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        cum = dict(zip([a.name for a in ev.attacks], ev.outcomes[-1].cumulative_robust))
        pgd_sub = cum["pgd"]
        ra = ev.robust_accuracy(0.3)
        add(
            "robust accuracy (worst case)",
            "standard suite",
            0.3,
            ra,
            "<= pgd-40",
            ra <= pgd_sub,
            seconds,
            n=len(sub.y),
            extra={"cumulative": cum, "flags": sorted({f.code for f in ev.flags})},
        )

    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out.with_suffix(".parquet"), index=False)
    df.to_csv(out.with_suffix(".csv"), index=False)
    shown = df[["measure", "attack", "eps", "n", "value", "target", "pass", "seconds", "load_avg"]]
    md = markdown_table(shown)
    cmd = "RBC_DATA_DIR=../shared/data python benchmarks/mnist_whitebox.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    out.with_suffix(".md").write_text(
        f"# MNIST white-box acceptance ({base['model']})\n\n`{cmd.strip()}`\n\n{md}\n"
        f"extra:\n\n" + "\n".join(f"- {r['measure']} / {r['attack']}: {r['extra']}" for r in rows) + "\n"
    )
    print(md)
    for r in rows:
        if r["extra"] != "{}":
            print(f"{r['measure']} / {r['attack']}: {r['extra']}")
    return df


if __name__ == "__main__":
    main()
