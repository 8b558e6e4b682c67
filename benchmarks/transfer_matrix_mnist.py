"""Transfer matrix on MNIST: FGSM, MI-FGSM and PGD crafted on each model, scored on every model (Linf 0.3).

Models (``--models``, store checkpoints): by default the standard-trained ``lenet5``, ``smallcnn``, ``fastcnn``
(trained here for MNIST's default epochs when the store lacks them) and, when present in the store, adversarially
trained ones passed with ``--extra``. Success is measured on the points the target classifies correctly; the
diagonal is the white-box success.

    RBC_DATA_DIR=../shared/data python benchmarks/transfer_matrix_mnist.py --threads 1 --store /tmp/store

Writes ``results/benchmarks/transfer_matrix_mnist.{parquet,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from _util import load_average, markdown_table, standard_model  # noqa: E402

from robustbench_cnn.attacks.blackbox.matrix import transfer_matrix
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split

ATTACKS = {"fgsm": {}, "mi-fgsm": {"steps": 10}, "pgd": {"steps": 20}}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist/lenet5-standard,mnist/smallcnn-standard,mnist/fastcnn-standard")
    parser.add_argument("--extra", default="", help="more checkpoints (e.g. adversarially trained), comma-separated")
    parser.add_argument("--threat", default="linf:0.3")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/benchmarks/transfer_matrix_mnist", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [m.strip() for m in f"{args.models},{args.extra}".split(",") if m.strip()]
    models = {name: standard_model(name, args.store, args.data_dir) for name in names}
    test = load_split("mnist", "test", n=args.n, data_dir=args.data_dir)
    threat = ThreatModel.parse(args.threat)
    frames, text = (
        [],
        [
            f"# Transfer matrix, MNIST, {threat}, n={args.n} (success % on target-correct points; "
            "rows: source, columns: target; diagonal = white-box)",
            "",
        ],
    )
    for attack, params in ATTACKS.items():
        start = time.perf_counter()
        frame = transfer_matrix(models, test.x, test.y, threat, attack, attack_params=params, seed=args.seed)
        frame = frame.assign(seconds=time.perf_counter() - start, load_avg=load_average())
        frames.append(frame)
        short = {n: n.split("/", 1)[1] for n in names}
        pivot = (
            frame.assign(source=frame["source"].map(short), target=frame["target"].map(short)).pivot(
                index="source", columns="target", values="success_rate"
            )
            * 100
        )
        pivot = pivot.reindex(index=list(short.values()), columns=list(short.values())).reset_index()
        text += [f"## {attack} {params or ''}", "", markdown_table(pivot, ".1f")]
    table = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out.with_suffix(".parquet"), index=False)
    out.with_suffix(".md").write_text("\n".join(text))
    print("\n".join(text))
    return table


if __name__ == "__main__":
    main()
