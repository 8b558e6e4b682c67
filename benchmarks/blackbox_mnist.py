"""Black-box attack on MNIST after Papernot et al. (2017): a substitute from <= 6,400 label queries, then transfer.

Setting of the paper (https://arxiv.org/abs/1602.02697, section 5): 150 seed points from the test set,
6 substitute rounds, lambda 0.1, labels only; adversarial examples crafted on the substitute with FGSM
(the paper reports 84.24% of them misclassified by the target at eps 0.3). Here (issue 18's setting by default):

- targets: standard-trained registry CNNs (``--target-arch``, comma-separated, default lenet5,smallcnn,alexnet;
  each trained for ``--epochs`` epochs, seed ``--seed``, and saved as ``mnist/<arch>-standard`` if the store has no
  such checkpoint), or any store checkpoint (``--target``, e.g. an adversarially trained one);
- substitute: ``--substitute-arch`` (default fastcnn), ``--seed-size`` seeds (default 100, the last of the test
  permutation), 6 rounds, lambda 0.1, budget 6,400 label queries; ``--setting`` picks the substitute training:
  ``default`` (the library's defaults: the budget spread over the rounds, translated Jacobian and FGSM points) and/or
  ``papernot`` (the paper's Algorithm 1: the set doubles each round, Jacobian points only);
- attacks on the substitute: FGSM, PGD (40 steps, no early stop) and MI-FGSM (10 steps) at linf
  eps 0.1, 0.2, 0.3, plus random +-eps noise as a control; success on the points the target
  classifies correctly, over the first ``--n`` test points (disjoint from the seed set).

    RBC_DATA_DIR=../shared/data python benchmarks/blackbox_mnist.py --threads 1

Measurements and the commands that produced them: ``docs/blackbox.md``.

Writes ``results/benchmarks/blackbox_mnist.parquet`` (and ``.md``, ``_history.parquet``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from _util import load_average, markdown_table  # noqa: E402

from robustbench_cnn.attacks.blackbox import random_noise_attack, train_substitute, transfer_attack
from robustbench_cnn.commands.errors import parse_key_values
from robustbench_cnn.core.devices import resolve_device
from robustbench_cnn.core.errors import CheckpointError
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.store import checkpoint_name, load_checkpoint
from robustbench_cnn.training import TrainConfig, accuracy
from robustbench_cnn.workflows import train_model

PAPER = {("fgsm", 0.3): 84.24}  # % of the substitute's FGSM examples misclassified by the MNIST oracle
ATTACKS = {"fgsm": {}, "pgd": {"steps": 40}, "mi-fgsm": {"steps": 10}}


SETTINGS = {"default": {}, "papernot": {"growth": "double", "augmentations": ("jacobian",), "members": 1}}


def _target(arch: str, args: argparse.Namespace, device: torch.device, kwargs: dict) -> tuple[torch.nn.Module, object]:
    name = args.target or checkpoint_name("mnist", arch, "standard", args.target_tag)
    try:
        target, card = load_checkpoint(name, args.store, device)
        print(f"target {name}: loaded (clean accuracy {card.clean_accuracy:.4f})", flush=True)
        return target, card
    except CheckpointError:
        if args.target:
            raise
    print(f"target {name}: training {args.epochs} epochs", flush=True)
    config = TrainConfig.for_dataset("mnist", epochs=args.epochs, device=str(device), seed=args.seed)
    trained = train_model(
        arch,
        "mnist",
        config,
        store=args.store,
        data_dir=args.data_dir,
        tag=args.target_tag,
        arch_kwargs=kwargs or None,
        progress=False,
    )
    card = trained.card
    print(f"target {name}: clean accuracy {card.clean_accuracy:.4f} ({card.train_time_s:.0f} s)", flush=True)
    return trained.model.to(device).eval(), card


def _row(attack: str, res, seconds: float, ctx: dict) -> dict:
    """One table row (and a printed line) for the target's result ``res`` of ``attack``."""
    print(
        f"{ctx['target']} {ctx['setting']:8s} {attack:8s} eps {res.threat.eps:.2f}: transfer success "
        f"{100 * res.success_rate:6.2f}% ({int(res.success.sum())}/{int(res.clean_correct.sum())})",
        flush=True,
    )
    return {
        "target": ctx["target"],
        "setting": ctx["setting"],
        "attack": attack,
        "norm": res.threat.norm.value,
        "eps": float(res.threat.eps),
        "n": res.n,
        "attacked": int(res.clean_correct.sum()),
        "success_rate": res.success_rate,
        "success_pct": round(100 * res.success_rate, 2),
        "paper_pct": PAPER.get((attack, round(res.threat.eps, 3)), float("nan")),
        "target_clean_acc": res.clean_accuracy,
        "substitute_acc": ctx["substitute_acc"],
        "agreement": ctx["agreement"],
        "substitute_queries": ctx["substitute_queries"],
        "target_queries": int(res.queries.sum()),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-arch", default="lenet5,smallcnn,alexnet", help="comma-separated architectures")
    parser.add_argument(
        "--target", default=None, help="a store checkpoint to attack instead (e.g. an adversarially trained model)"
    )
    parser.add_argument("--attacks", default="fgsm,pgd,mi-fgsm", help=f"subset of {','.join(ATTACKS)}")
    parser.add_argument("--epochs", type=int, default=3, help="target training epochs (when trained here)")
    parser.add_argument(
        "--target-arch-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option of the target trained here, e.g. classic=true (LeNet-5 with tanh "
        "and average pooling); the checkpoint is tagged with --target-tag",
    )
    parser.add_argument("--target-tag", default=None, help="tag of the target checkpoint (mnist/ARCH-standard-TAG)")
    parser.add_argument("--substitute-arch", default="fastcnn")
    parser.add_argument(
        "--substitute-arch-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option of the substitute, e.g. classic=true",
    )
    parser.add_argument(
        "--setting", default="default", help=f"substitute training, comma-separated: {','.join(SETTINGS)}"
    )
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--budget", type=int, default=6400)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs-per-round", type=int, default=10)
    parser.add_argument("--n", type=int, default=9900, help="evaluation points (disjoint from the seed set)")
    parser.add_argument("--eps", default="0.1,0.2,0.3")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--store", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/benchmarks/blackbox_mnist.parquet")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.n > 10_000 - args.seed_size:
        raise SystemExit(
            f"--n {args.n} would overlap the {args.seed_size}-image seed set: use <= {10_000 - args.seed_size}"
        )
    eps_list = [float(e) for e in args.eps.split(",")]
    settings = [t.strip() for t in args.setting.split(",") if t.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown --setting {', '.join(unknown)}: use some of {', '.join(SETTINGS)}")
    t_start = time.perf_counter()

    target_kwargs = parse_key_values(tuple(args.target_arch_arg), "--target-arch-arg")
    substitute_kwargs = parse_key_values(tuple(args.substitute_arch_arg), "--substitute-arch-arg")
    if target_kwargs and not args.target_tag:
        raise SystemExit("--target-arch-arg needs --target-tag (a checkpoint name for the variant)")
    data = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    x, y = data.x.to(device), data.y.to(device)
    rows, histories, notes = [], [], []
    archs = [args.target] if args.target else [a.strip() for a in args.target_arch.split(",") if a.strip()]
    for arch in archs:
        target, card = _target(arch, args, device, target_kwargs)
        for setting in settings:
            t0 = time.perf_counter()
            sub = train_substitute(
                target,
                "mnist",
                args.substitute_arch,
                seed_size=args.seed_size,
                rounds=args.rounds,
                lam=0.1,
                budget=args.budget,
                epochs_per_round=args.epochs_per_round,
                seed=args.seed,
                device=str(device),
                data_dir=args.data_dir,
                store=args.store,
                target_name=card.name,
                tag=f"{setting}-of-{card.name.split('/')[-1]}",
                arch_kwargs=substitute_kwargs or None,
                **SETTINGS[setting],
            )
            sub_s = time.perf_counter() - t0
            print(sub.history.to_string(index=False), flush=True)
            histories.append(sub.history.assign(target=card.name, setting=setting))
            last = sub.history.iloc[-1]
            substitute = sub.model.to(device)
            sub_acc_eval = accuracy(substitute, data.x, data.y, device=device)
            notes.append(
                f"- target {card.name} (clean {card.clean_accuracy:.4f}), {setting} substitute {sub.card.name}: "
                f"{sub.queries} label queries, accuracy {sub_acc_eval:.4f}, agreement {float(last['agreement']):.4f}, "
                f"trained in {sub_s:.0f} s"
            )

            ctx = {
                "target": card.name,
                "setting": setting,
                "substitute_acc": sub_acc_eval,
                "agreement": float(last["agreement"]),
                "substitute_queries": sub.queries,
            }
            for attack in filter(None, (a.strip() for a in args.attacks.split(","))):
                t0 = time.perf_counter()
                results = transfer_attack(
                    substitute,
                    target,
                    x,
                    y,
                    Norm.LINF,
                    attack,
                    eps_list=eps_list,
                    seed=args.seed,
                    attack_params=ATTACKS[attack],
                    source_names=[sub.card.name],
                    target_name=card.name,
                )
                rows += [_row(attack, res, (time.perf_counter() - t0) / len(results), ctx) for res in results]
        for eps in eps_list:
            t0 = time.perf_counter()
            res = random_noise_attack(target, x, y, ThreatModel(Norm.LINF, eps), seed=args.seed)
            noise_ctx = {"target": card.name, "setting": "-", "substitute_acc": float("nan"), "agreement": float("nan")}
            rows.append(_row("noise", res, time.perf_counter() - t0, {**noise_ctx, "substitute_queries": 0}))

    table = pd.DataFrame(rows).astype(
        {
            "eps": "float64",
            "n": "int64",
            "attacked": "int64",
            "success_rate": "float64",
            "substitute_queries": "int64",
            "target_queries": "int64",
        }
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    pd.concat(histories).to_parquet(out.with_name(out.stem + "_history.parquet"), index=False)
    header = (
        "# Black-box MNIST (Papernot et al. 2017 setting)\n\n"
        + "\n".join(notes)
        + f"\n\ntotal {time.perf_counter() - t_start:.0f} s; torch threads {torch.get_num_threads()}, device {device}; "
        f"load average {load_average()}.\n\n"
    )
    out.with_suffix(".md").write_text(header + markdown_table(table))
    print(f"written to {out}", flush=True)
    return table


if __name__ == "__main__":
    main()
