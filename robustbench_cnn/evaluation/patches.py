"""Universal adversarial patches: success rate against patch size, untargeted and per target class.

``evaluate_patches(model, x_train, y_train, x_test, y_test, sizes, targets)`` learns, for each patch size and each
target (``None``: untargeted), one universal patch on the training images with expectation over transformation
(:class:`~robustbench_cnn.attacks.patch.UniversalPatch`, Brown et al. 2017), then pastes it on every test image at
``placements`` seeded random positions and counts the successes: the prediction leaves the true class (untargeted)
or becomes the target (targeted; a point of the target class is not attacked). Success rates are fractions of the
attacked (point, placement) pairs, with 95% Clopper-Pearson intervals; the same figure on the training images at
random positions shows how far the patch generalises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.patch import UNTARGETED, UniversalPatch
from robustbench_cnn.core.patch_threat import PatchThreat
from robustbench_cnn.core.statistics import proportion_ci

__all__ = ["PatchEvaluation", "evaluate_patches"]

#: Decimals of the patch pixels kept in the records (a patch of a run is a few hundred numbers).
PATCH_DECIMALS = 4
#: Offset of the placement seeds from the training seed, so the test positions are not the training draws.
PLACEMENT_SEED_OFFSET = 1


@dataclass
class PatchEvaluation:
    """What :func:`evaluate_patches` measured: one record per (size, target) in :attr:`rows`, one per (size, target,
    placement, point) in :attr:`samples`, and the learned patches by (area, target) (C x s x s, in [0, 1])."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    patches: dict[tuple[float, int], torch.Tensor] = field(default_factory=dict)


def _rate(k: int, n: int) -> float:
    return k / n if n else float("nan")


def evaluate_patches(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    sizes: Sequence[PatchThreat | float | str],
    targets: Sequence[int | None] = (None,),
    *,
    attack_params: dict[str, Any] | None = None,
    placements: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    indices: torch.Tensor | None = None,
) -> PatchEvaluation:
    """Learn a universal patch per size and target on ``(x_train, y_train)`` and measure its success on
    ``(x_test, y_test)`` at ``placements`` random positions per point (all tensors on the model's device).

    Args:
        sizes: patch threats or their areas (``0.1`` or ``"patch:0.1"``), each > 0.
        targets: ``None`` for the untargeted patch, or target classes; one patch is learned per entry.
        attack_params: parameters of the ``patch`` attack (steps, lr, batch, eot_samples, rotation, ...).
        placements: random positions per test point (each a seeded draw; default 1).
        seed: the patches are learned with ``seed``; placement k uses ``seed + 1 + k``.
        indices: the test points' ids in their split (``sample_id`` of the samples; default 0..N-1).
    """
    if placements < 1:
        raise ValueError(f"invalid placements {placements}: must be >= 1")
    threats = [
        s if isinstance(s, PatchThreat) else PatchThreat.parse(s) if isinstance(s, str) else PatchThreat(s)
        for s in sizes
    ]
    if not threats or any(t.area <= 0 for t in threats):
        raise ValueError("give patch sizes > 0, e.g. 0.05,0.1,0.2")
    height, width = x_test.shape[2:]
    ids = indices.tolist() if indices is not None else list(range(len(y_test)))
    result = PatchEvaluation()
    for threat in threats:
        for target in targets:
            attack = get_attack("patch", **(attack_params or {}))
            assert isinstance(attack, UniversalPatch)
            key = UNTARGETED if target is None else int(target)
            t0 = time.perf_counter()
            patch = attack.fit(model, x_train, y_train, threat, target=target, seed=seed)
            fit_s = time.perf_counter() - t0

            def goals(y: torch.Tensor, key: int = key) -> torch.Tensor | None:
                return None if key == UNTARGETED else torch.full_like(y, key)

            on_train = attack(model, x_train, y_train, threat, targets=goals(y_train), seed=seed, batch_size=batch_size)
            t0 = time.perf_counter()
            hits = attacked = robust = 0
            for k in range(placements):
                res = attack(
                    model,
                    x_test,
                    y_test,
                    threat,
                    targets=goals(y_test),
                    seed=seed + PLACEMENT_SEED_OFFSET + k,
                    batch_size=batch_size,
                )
                hits += int(res.success.sum())
                attacked += int(res.attacked.sum())
                robust += int(res.robust.sum())
                for i in range(res.n):
                    result.samples.append(
                        {
                            "area": threat.area,
                            "target": key,
                            "placement": k,
                            "sample_id": int(ids[i]),
                            "label": int(y_test[i]),
                            "clean_correct": bool(res.clean_correct[i]),
                            "attacked": bool(res.attacked[i]),
                            "success": bool(res.success[i]),
                            "pred_adv": int(res.pred_adv[i]),
                        }
                    )
            eval_s = time.perf_counter() - t0
            lo, hi = proportion_ci(hits, attacked) if attacked else (float("nan"), float("nan"))
            n = len(y_test) * placements
            result.patches[(threat.area, key)] = patch.cpu()
            result.rows.append(
                {
                    "threat": str(threat),
                    "area": threat.area,
                    "side": threat.side(height, width),
                    "covered": threat.covered(height, width),
                    "target": key,
                    "targeted": key != UNTARGETED,
                    "n": len(y_test),
                    "placements": placements,
                    "clean_acc": res.clean_accuracy,
                    "attacked": attacked,
                    "successes": hits,
                    "success_rate": _rate(hits, attacked),
                    "success_lo": lo,
                    "success_hi": hi,
                    "robust_acc": _rate(robust, n),
                    "train_n": int(len(y_train)),
                    "train_success_rate": on_train.success_rate,
                    "fit_s": fit_s,
                    "eval_s": eval_s,
                    "seed": seed,
                    "attack_params": dict(attack.params),
                    "patch": [round(float(v), PATCH_DECIMALS) for v in patch.flatten().tolist()],
                    "patch_shape": list(patch.shape),
                }
            )
    return result
