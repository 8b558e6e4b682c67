"""Looking for catastrophic overfitting on digits: FGSM-RS and N-FGSM, guard off, one setting per call.

Trains fastcnn on the bundled digits with ``defenses.defend`` (no masking probes, guard off), then prints clean and
PGD-20 accuracy on the whole digits test split, the monitor's per-epoch PGD-10 accuracy and the training accuracy
(on the recipe's own adversarial points). A collapse shows as PGD falling to ~0 while training accuracy stays high.

    python benchmarks/single_step_digits.py EPS EPOCHS SEED DEFENSE [key=value ...]   # e.g. 0.2 30 0 fgsm-rs alpha=0.5

``key=value``: defense parameters (``true``/``false`` or numbers). Results of the settings tried are in
``docs/single_step_at.md``.
"""

import sys
import time

import torch

from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.defenses.perturb import pgd_accuracy
from robustbench_cnn.defenses.train import defend
from robustbench_cnn.training import TrainConfig

torch.set_num_threads(1)
test = load_split("digits", "test")
eps, epochs, seed, name = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
params = {k: (v if v in ("true", "false") else float(v)) for k, v in (a.split("=") for a in sys.argv[5:])}
config = TrainConfig.for_dataset("digits", epochs=epochs, seed=seed, device="cpu")
start = time.perf_counter()
tag = f"e{eps}s{seed}x{epochs}" + "_".join(sys.argv[5:]).replace("=", "-")
out = defend(
    name, "fastcnn", "digits", f"linf:{eps}", config, store="/tmp/srch", tag=tag, progress=False, probes={},
    guard=False, **params,
)  # fmt: skip
clean, robust = pgd_accuracy(out.model, test.x, test.y, ThreatModel.parse(f"linf:{eps}"), steps=20)
print(
    sys.argv[1:],
    round(clean, 3),
    round(robust, 3),
    [round(v, 2) for v in out.epochs["pgd_accuracy"]],
    [round(v, 2) for v in out.epochs["train_accuracy"]],
    round(time.perf_counter() - start, 1),
    flush=True,
)
