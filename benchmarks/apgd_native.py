"""Native APGD (``apgd``, ``apgd-mt``) against pyautoattack's APGD-CE / APGD-DLR / APGD-T on the tests' tiny digits net.

Same seed, the 297 held-out digits of ``tests/attack_fixtures.py``, linf eps 0.05 and 0.1, 1 thread:

    PYTHONPATH=. nice -n 10 python benchmarks/apgd_native.py

Prints robust accuracy and seconds per attack (the table in ``docs/fast_cascade.md``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from attack_fixtures import held_out, trained_model  # noqa: E402

from robustbench_cnn.attacks import get_attack  # noqa: E402
from robustbench_cnn.core.types import ThreatModel  # noqa: E402

ATTACKS = [
    ("apgd-ce", {}),
    ("apgd", {}),
    ("apgd-dlr", {}),
    ("apgd", {"loss": "dlr"}),
    ("apgd-t", {}),
    ("apgd-mt", {}),
    ("apgd-mt", {"n_target_classes": 9}),
    ("apgd-mt", {"ranking": "logits"}),
]


def main() -> None:
    torch.set_num_threads(1)
    model = trained_model()
    x, y = held_out(297)
    for eps in (0.05, 0.1):
        threat = ThreatModel.parse(f"linf:{eps}")
        for name, params in ATTACKS:
            res = get_attack(name, **params)(model, x, y, threat, seed=0)
            print(eps, name, params, round(res.robust_accuracy, 4), round(res.elapsed_s, 2), flush=True)


if __name__ == "__main__":
    main()
