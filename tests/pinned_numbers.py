"""Fingerprints of what the attacks and the training recipes compute on a fixed tiny model, for the pinned-numbers
regression test (``tests/test_pinned_numbers.py`` runs this file in a subprocess with pinned CPU kernels).

Printed as JSON ``{case: sha256 prefix}``: the adversarial examples of pgd, apgd-ce (the AutoAttack adapter), fgsm
and mi-fgsm (linf and l2), a warm-started robustness curve, an evaluate cascade with its carried points, a transfer
curve, and the weights after a few training steps of each adversarial-training recipe (their inner maximisation:
random starts, steps, projections). A refactoring that keeps the same ops in the same order keeps every entry.

Run ``python tests/pinned_numbers.py`` (from the repository root) to print the current fingerprints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(1)

from attack_fixtures import held_out, trained_model  # noqa: E402

from robustbench_cnn.attacks import get_attack  # noqa: E402
from robustbench_cnn.attacks.blackbox.transfer import transfer_attack  # noqa: E402
from robustbench_cnn.core.types import ThreatModel  # noqa: E402
from robustbench_cnn.defenses import get_defense  # noqa: E402
from robustbench_cnn.defenses.perturb import pgd_accuracy  # noqa: E402
from robustbench_cnn.evaluation.engine import evaluate  # noqa: E402
from robustbench_cnn.training import StepContext  # noqa: E402


def fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def attacks(out: dict[str, str]) -> None:
    model = trained_model()
    x, y = held_out(48)
    for name, params in (("pgd", {"steps": 10}), ("apgd-ce", {"n_iter": 10}), ("fgsm", {}), ("mi-fgsm", {})):
        for threat in ("linf:0.1", "l2:1.0"):
            res = get_attack(name, **params)(model, x, y, ThreatModel.parse(threat), seed=3, batch_size=32)
            out[f"{name}@{threat}"] = fingerprint(res.x_adv, res.success)
    pgd = get_attack("pgd", steps=5)
    curve = pgd.robustness_curve(model, x, y, "linf", [0.0, 0.05, 0.1], seed=1, order="ascending")
    out["pgd curve"] = fingerprint(*[r.x_adv for r in curve], *[r.success for r in curve])
    curve = pgd.robustness_curve(model, x, y, "linf", [0.0, 0.05, 0.1], seed=1)  # PGD's default: shrinking ball
    out["pgd curve (shrinking ball)"] = fingerprint(*[r.x_adv for r in curve], *[r.success for r in curve])
    ev = evaluate(model, x, y, "linf", [0, 0.05, 0.1], [("pgd", {"steps": 5}), ("fgsm", {})], seed=2)
    out["evaluate cascade"] = fingerprint(*[o.x_adv for o in ev.outcomes], *[o.broken_by for o in ev.outcomes])
    moved = transfer_attack(trained_model(200, 1), model, x, y, "l2", "pgd", [0.5, 1.0], seed=4)
    out["transfer curve"] = fingerprint(*[r.x_adv for r in moved], *[r.success for r in moved])


def defenses(out: dict[str, str]) -> None:
    x, y = held_out(64)
    for threat in ("linf:0.1", "l2:1.0"):
        for name in ("pgd-at", "fgsm-rs", "trades", "mart", "free-at"):
            model = trained_model(100, 2).train()
            recipe = get_defense(name, threat, **({"steps": 3} if name != "fgsm-rs" and name != "free-at" else {}))
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            generator = torch.Generator().manual_seed(5)
            for step in range(4):
                ctx = StepContext(0, step, 4, 0.05, generator, contextlib.nullcontext)
                batch = slice(16 * step, 16 * step + 16)
                loss = recipe.loss(model, x[batch], y[batch], ctx)
                opt.zero_grad()
                loss.backward()
                opt.step()
            out[f"{name}@{threat} weights"] = fingerprint(*model.state_dict().values())
        accuracy = pgd_accuracy(trained_model(), x, y, ThreatModel.parse(threat), steps=5, seed=3)
        out[f"pgd_accuracy@{threat}"] = f"{accuracy[0]:.6f}/{accuracy[1]:.6f}"


if __name__ == "__main__":
    fingerprints: dict[str, str] = {}
    attacks(fingerprints)
    defenses(fingerprints)
    print(json.dumps({"torch": torch.__version__, "fingerprints": fingerprints}, indent=1, sort_keys=True))
