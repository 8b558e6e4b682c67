"""How much of feature squeezing's adaptive robustness on MNIST is the 1-bit squeezer alone.

Attacks the classifier composed with the 1-bit squeezer (BPDA: the identity gradient through the rounding) with
the registered PGD (``--steps`` steps, ``--restarts`` restarts) on the first ``-n`` test points (the ``detection``
cell's seeded subset) and prints, per eps, the robust accuracy of that view alone and how many pixels per image lie
in (0.5 - eps, 0.5 + eps), the only ones an eps-ball perturbation can flip. A reference beside the ``adaptive``
rows of ``rbc detect`` (docs/detection.md): the joint detector can be evaded only where this view can be fooled.

    python benchmarks/detection_squeezed_view.py --model mnist/lenet5-standard --eps 0.1,0.3 -n 500
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from _util import load_average, markdown_table
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.detectors.base import bpda
from robustbench_cnn.detectors.feature_squeezing import reduce_bit_depth
from robustbench_cnn.workflows import load_for_dataset


class SqueezedView(nn.Module):
    """``model(reduce_bit_depth(x, bits))`` with BPDA through the rounding."""

    def __init__(self, model: nn.Module, bits: int) -> None:
        super().__init__()
        self.model, self.bits = model, bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(bpda(x, lambda t: reduce_bit_depth(t, self.bits)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist/lenet5-standard")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--eps", default="0.1,0.3")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--bits", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_for_dataset(args.model, args.dataset, torch.device("cpu"))
    split = load_split(args.dataset, "test", n=args.n)
    view = SqueezedView(model.eval(), args.bits)
    rows = []
    for eps in (float(e) for e in args.eps.split(",")):
        attack = get_attack("pgd", steps=args.steps, restarts=args.restarts)
        result = attack(view, split.x, split.y, ThreatModel(Norm.LINF, eps), seed=0)
        flippable = ((split.x - 0.5).abs() < eps).flatten(1).sum(dim=1).float().mean()
        rows.append(
            {
                "eps": eps,
                "clean_acc_of_view": result.clean_accuracy,
                "robust_acc_of_view": result.robust_accuracy,
                "flippable_pixels_per_image": float(flippable),
            }
        )
    print(
        f"{args.model}, {args.bits}-bit view, PGD-{args.steps} x {args.restarts} restarts (BPDA), n={args.n}, "
        f"load {load_average()}"
    )
    print(markdown_table(pd.DataFrame(rows), ".3f"))


if __name__ == "__main__":
    main()
