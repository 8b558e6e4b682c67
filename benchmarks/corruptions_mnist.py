"""MNIST-C accuracy of standard and Linf adversarially trained MNIST models (RobustBench's corruptions track).

For each store checkpoint (``--models``): clean accuracy, the 15 MNIST-C corruptions at their published
severities and their mean (``corruptions``), and every severity of ``fog`` (MNIST-C's constants) and of
``contrast`` (CIFAR-10-C's constants on grey images), on the same ``--n`` MNIST test images, corruptions seeded
per image index. The models (trained beforehand with the store ``S``):

    rbc --threads 1 train -m smallcnn -d mnist --epochs 2 --store S
    rbc --threads 1 train -m fastcnn -d mnist --epochs 2 --lr 5e-3 --weight-decay 0 --batch-size 100 \\
        --no-normalize --store S
    rbc --threads 1 defend --defense pgd-at -m fastcnn -d mnist -t linf:0.3 --epochs 5 --lr 5e-3 --weight-decay 0 \\
        --batch-size 100 --no-normalize --defense-arg eps_ramp=2 --store S

    RBC_DATA_DIR=../shared/data nice -n 10 python benchmarks/corruptions_mnist.py --store S --n 1000

Writes ``results/benchmarks/corruptions_mnist.{parquet,md}``. With ``--cifar10 imagefolder:PATH`` it runs CIFAR-10-C
(the 75 cells) on that dataset's test images instead, into ``results/benchmarks/corruptions_cifar10.{parquet,md}``:

    rbc --threads 1 train -m lenet5 -d imagefolder:PATH --epochs 8 --store S
    rbc --threads 1 defend --defense pgd-at -m lenet5 -d imagefolder:PATH -t linf:8/255 --epochs 8 --steps 7 \\
        --alpha 2/255 --store S
    python benchmarks/corruptions_mnist.py --store S --n 500 --cifar10 imagefolder:PATH \\
        --models cifar10-jpeg/lenet5-standard,cifar10-jpeg/lenet5-pgd-at

With ``--severity-change N`` it instead tabulates the
mean absolute pixel change of every corruption at every severity on N MNIST and N CIFAR-10 test images
(``imagefolder:cifar10-jpeg`` under the data root, skipped when absent) with each benchmark's constants, into
``results/benchmarks/corruption_severity_change.md``.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import pandas as pd
import torch
from _util import load_average, markdown_table  # noqa: E402

from robustbench_cnn.core.errors import DataNotFoundError
from robustbench_cnn.corruptions import CORRUPTIONS, corrupt
from robustbench_cnn.data import load_split
from robustbench_cnn.evaluation.corruptions import evaluate_corruptions
from robustbench_cnn.store import load_checkpoint

THREATS = ("corruptions", "corruption:fog", "corruption:contrast")


def severity_change(n: int, seed: int, data_dir: str | None, out: Path) -> pd.DataFrame:
    """Mean |corrupted - clean| per corruption and severity, MNIST (mnist-c constants) and CIFAR-10 (cifar10-c)."""
    rows = []
    for dataset, benchmark in (("mnist", "mnist-c"), ("imagefolder:cifar10-jpeg", "cifar10-c")):
        try:
            split = load_split(dataset, "test", n=n, data_dir=data_dir)
        except DataNotFoundError:
            continue
        for name in CORRUPTIONS.list():
            _, table = CORRUPTIONS.get(name).table(benchmark, int(split.x.shape[1]))
            row: dict = {"benchmark": benchmark, "corruption": name}
            for severity in range(1, len(table) + 1):
                corrupted = corrupt(split.x, name, severity, seed, benchmark=benchmark, indices=split.index)
                row[f"s{severity}"] = float((corrupted - split.x).abs().mean())
            changes = [row[f"s{s}"] for s in range(1, len(table) + 1)]
            row["increasing"] = all(b > a for a, b in zip(changes, changes[1:]))
            rows.append(row)
    frame = pd.DataFrame(rows)
    text = [
        f"# Mean absolute change per severity, {n} test images per dataset, seed {seed}",
        "",
        markdown_table(frame, ".4f"),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name("corruption_severity_change.md").write_text("\n".join(text))
    print("\n".join(text))
    return frame


def cifar10_c(args: argparse.Namespace) -> pd.DataFrame:
    """CIFAR-10-C (15 corruptions x 5 severities, the RobustBench mean) of ``--models`` on ``--n`` images of
    ``--cifar10`` (an ImageFolder dataset name such as ``imagefolder:/path/cifar10-jpeg``)."""
    test = load_split(args.cifar10, "test", n=args.n, data_dir=args.data_dir)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, card = load_checkpoint(name, args.store, "cpu")
        meta = {"model": name, "recipe": card.recipe, "train_threat": card.threat or "-"}
        ev = evaluate_corruptions(
            model, test.x, test.y, "corruptions", benchmark="cifar10-c", seed=args.seed, indices=test.index
        )
        rows.extend(ev.records(meta))
    table = pd.DataFrame(rows).assign(load_avg=load_average())
    models = list(dict.fromkeys(table["model"]))
    cells = table[table["corruption"] != "mean"]
    per_corruption = cells.pivot_table(index="corruption", columns="model", values="accuracy", sort=False)[models]
    clean = table.groupby("model", sort=False)["clean_accuracy"].first()
    mean = table[table["corruption"] == "mean"].set_index("model")["accuracy"]
    summary = pd.concat(
        [pd.DataFrame([clean[models]], index=["clean"]), per_corruption, pd.DataFrame([mean[models]], index=["mean"])]
    )
    by_severity = cells[cells["corruption"].isin(["fog", "contrast"])].pivot_table(
        index=["corruption", "severity"], columns="model", values="accuracy", sort=False
    )[models]
    seconds = cells.groupby("model", sort=False)["seconds"].sum()
    text = [
        f"# CIFAR-10-C (generated), {args.n} {args.cifar10} test images, seed {args.seed}, {args.threads} thread(s), "
        f"{platform.machine()}, load {load_average()}",
        "",
        "Accuracy (%) per corruption, mean over severities 1-5; `mean` is the 75-cell mean RobustBench reports.",
        "",
        markdown_table((summary * 100).rename_axis("corruption").reset_index(), ".2f"),
        "Every severity of fog and contrast, accuracy (%).",
        "",
        markdown_table((by_severity * 100).reset_index(), ".2f"),
        "Seconds (corrupting + predicting, all cells): " + ", ".join(f"{m} {seconds[m]:.0f}" for m in models),
        "",
    ]
    out = Path(args.out if args.out != OUT_DEFAULT else "results/benchmarks/corruptions_cifar10")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out.with_suffix(".parquet"), index=False)
    out.with_suffix(".md").write_text("\n".join(text))
    print("\n".join(text))
    return table


OUT_DEFAULT = "results/benchmarks/corruptions_mnist"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist/smallcnn-standard,mnist/fastcnn-standard,mnist/fastcnn-pgd-at")
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=OUT_DEFAULT, help="path without extension")
    parser.add_argument("--severity-change", type=int, default=0, metavar="N", help="tabulate the change instead")
    parser.add_argument("--cifar10", default="", metavar="DATASET", help="CIFAR-10-C on DATASET instead (see below)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.severity_change:
        return severity_change(args.severity_change, args.seed, args.data_dir, Path(args.out))
    if args.cifar10:
        return cifar10_c(args)
    test = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, card = load_checkpoint(name, args.store, "cpu")
        meta = {"model": name, "recipe": card.recipe, "train_threat": card.threat or "-"}
        for threat in THREATS:
            ev = evaluate_corruptions(
                model, test.x, test.y, threat, benchmark="mnist-c", seed=args.seed, indices=test.index
            )
            rows.extend(ev.records(meta))
    table = pd.DataFrame(rows).assign(load_avg=load_average())
    models = list(dict.fromkeys(table["model"]))
    clean = table.groupby("model", sort=False)["clean_accuracy"].first()

    def pivot(frame: pd.DataFrame, index: list[str]) -> pd.DataFrame:
        wide = frame.pivot_table(index=index, columns="model", values="accuracy", sort=False)[models] * 100
        return wide.reset_index()

    mnist_c = table[table["threat"] == "corruptions"]
    header = pd.DataFrame([{"corruption": "clean", "severity": 0, **{m: clean[m] * 100 for m in models}}])
    main_table = pd.concat([header, pivot(mnist_c, ["corruption", "severity"])], ignore_index=True)
    extra = pivot(
        table[(table["threat"] != "corruptions") & (table["corruption"] != "mean")], ["corruption", "severity"]
    )
    seconds = table[table["corruption"] != "mean"].groupby("model", sort=False)["seconds"].sum()
    text = [
        f"# MNIST-C, {args.n} MNIST test images, seed {args.seed}, {args.threads} thread(s), {platform.machine()}, "
        f"load {load_average()}",
        "",
        "Accuracy (%) per corruption at its MNIST-C severity; `mean` is the MNIST-C mean.",
        "",
        markdown_table(main_table, ".2f"),
        "Every severity of fog (MNIST-C constants) and contrast (CIFAR-10-C constants), accuracy (%).",
        "",
        markdown_table(extra, ".2f"),
        "Seconds (corrupting + predicting, all cells): " + ", ".join(f"{m} {seconds[m]:.0f}" for m in models),
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out.with_suffix(".parquet"), index=False)
    out.with_suffix(".md").write_text("\n".join(text))
    print("\n".join(text))
    return table


if __name__ == "__main__":
    main()
