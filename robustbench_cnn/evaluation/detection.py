"""Detection defenses evaluated non-adaptively and adaptively, on the same points, per detector and epsilon.

:func:`evaluate_detection` fits each detector on training points (``learned`` on them and their PGD examples at
the epsilon evaluated), calibrates its threshold on clean held-out points to the false positive rate ``fpr``
(default 5%), then reports on the evaluation points:

- clean: the classifier's accuracy, the fraction of clean points flagged (FPR) and the detection-aware clean
  accuracy (classified correctly and not flagged);
- against each standard, non-adaptive attack on the classifier alone (default ``fgsm`` and ``pgd``, registered
  attacks): detection TPR (the fraction of its successful adversarial examples that are flagged) and ROC-AUC
  (``sklearn.metrics.roc_auc_score``: scores of the correctly classified clean points vs those of the successful
  adversarial examples), and the detection-robust accuracy (:data:`DEFINITION`);
- against the adaptive attack (:func:`~robustbench_cnn.evaluation.adaptive_detection.adaptive_attack`, joint
  classifier + detector objective, BPDA, EOT where randomized; for detectors with views, e.g. feature squeezing, the
  ``consensus`` objective then runs on the points the joint one did not break): the detection-robust accuracy, taken
  per sample as the worst case over the adaptive and the non-adaptive attacks; this is the figure that counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.model_utils import batched_logits, eval_mode
from robustbench_cnn.core.statistics import proportion_ci
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.detectors import DEFAULT_FPR, Detector, get_detector
from robustbench_cnn.evaluation.adaptive_detection import adaptive_attack

__all__ = ["DEFINITION", "DetectionEvaluation", "evaluate_detection"]

#: How a point counts, written into every row.
DEFINITION = (
    "robust iff the clean point is classified correctly and not flagged (a flagged clean point is an error: "
    "abstaining on a clean input) and the attack's point is flagged (abstain on an adversarial input) or "
    "classified correctly"
)
#: Name of the adaptive attack in the tables.
ADAPTIVE = "adaptive"


@dataclass
class DetectionEvaluation:
    """Records of one model's detection evaluation: one summary record per detector x eps x attack (the
    adaptive row last), one sample record per detector x eps x attack x point."""

    summary: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0


def _auc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    if not len(negatives) or not len(positives):
        return float("nan")
    labels = [0] * len(negatives) + [1] * len(positives)
    scores = torch.cat([negatives, positives]).double().cpu().numpy()
    return float(roc_auc_score(labels, scores))


def _fit_adversarial(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int, batch_size: int
) -> torch.Tensor:
    """PGD examples (40 steps, the registered default) of the training points that it breaks."""
    result = get_attack("pgd")(model, x, y, threat, seed=seed, batch_size=batch_size)
    return result.x_adv[result.success]


def _verdicts(
    detector: Detector, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred, flagged = detector.predict(model, x_adv, batch_size)
    scores = detector.scores(model, x_adv, batch_size)
    return pred.to(y.device), flagged.to(y.device), scores


def evaluate_detection(
    model: nn.Module,
    detectors: Sequence[tuple[str, dict[str, Any]]],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    x_fit: torch.Tensor,
    y_fit: torch.Tensor,
    x_calibration: torch.Tensor,
    norm: Norm,
    eps_list: Sequence[float],
    attacks: Sequence[str] = ("fgsm", "pgd"),
    adaptive_steps: int = 100,
    adaptive_restarts: int = 1,
    fpr: float = DEFAULT_FPR,
    seed: int = 0,
    batch_size: int = 500,
) -> DetectionEvaluation:
    """Evaluate each ``(detector name, params)`` guarding ``model`` on ``(x, y)`` at each eps of ``eps_list``.

    Fit on ``(x_fit, y_fit)`` (training points), calibrate on ``x_calibration`` (clean held-out points, disjoint
    from ``x``) at false positive rate ``fpr``; non-adaptive ``attacks`` by registry name (default parameters,
    ``seed``); the adaptive attack with ``adaptive_steps`` steps and ``adaptive_restarts`` restarts. All tensors on
    the model's device. Returns plain records (see :class:`DetectionEvaluation`).
    """
    t0 = time.perf_counter()
    if not detectors:
        raise ValueError("give at least one detector")
    instances = [get_detector(name, **params) for name, params in detectors]  # unknown names fail before any work
    attack_objs = [get_attack(name) for name in attacks]
    out = DetectionEvaluation()
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with eval_mode(model):
        clean_pred = batched_logits(model, x, batch_size).argmax(dim=1)
    clean_correct = clean_pred == y
    fitted: dict[int, Detector] = {}
    for eps in eps_list:
        threat = ThreatModel(norm, float(eps))
        x_fit_adv = None
        if any(d.needs_adversarial for d in instances):
            x_fit_adv = _fit_adversarial(model, x_fit, y_fit, threat, seed, batch_size)
        adv_points: dict[str, torch.Tensor] = {}
        for attack in attack_objs:
            adv_points[attack.name] = attack(model, x, y, threat, seed=seed, batch_size=batch_size).x_adv
        for k, ((name, params), fresh) in enumerate(zip(detectors, instances)):
            det_t0 = time.perf_counter()
            detector = fitted.get(k)
            if detector is None or fresh.needs_adversarial:
                detector = get_detector(name, **params)
                detector.fit(model, x_fit, y_fit, x_fit_adv, generator, batch_size)
                detector.calibrate(model, x_calibration, fpr, batch_size)
                fitted[k] = detector
            _, clean_flag, clean_scores = _verdicts(detector, model, x, y, batch_size)
            clean_ok = clean_correct & ~clean_flag
            head = {
                "detector": detector.name,
                "detector_params": json.dumps(detector.params, sort_keys=True),
                "paper": detector.paper,
                "norm": norm.value,
                "eps": float(eps),
                "n": int(len(y)),
                "fpr_target": float(fpr),
                "threshold": detector.threshold,
                "n_calibration": int(len(x_calibration)),
                "calibration_fpr": detector.calibration_fpr,
                "clean_acc": float(clean_correct.float().mean()),
                "clean_fpr": float(clean_flag.float().mean()),
                "clean_det_acc": float(clean_ok.float().mean()),
                "definition": DEFINITION,
            }
            robust_all = clean_ok.clone()
            negatives = clean_scores[clean_correct.to(clean_scores.device)]
            runs: list[tuple[str, torch.Tensor]] = list(adv_points.items())
            todo = clean_ok.nonzero().squeeze(1)
            adapt_t0 = time.perf_counter()
            x_adaptive = x.clone()
            losses = ["joint", "consensus"] if detector.has_views else ["joint"]
            left = todo
            for loss in losses:  # a cascade: each objective runs on the points the earlier ones did not break
                if not len(left):
                    break
                found, won = adaptive_attack(
                    model,
                    detector,
                    x[left],
                    y[left],
                    threat,
                    steps=adaptive_steps,
                    restarts=adaptive_restarts,
                    loss=loss,
                    seed=seed,
                    batch_size=batch_size,
                )
                keep = won if loss != losses[0] else torch.ones_like(won)  # the first run's last iterates stay
                x_adaptive[left[keep]] = found[keep]
                left = left[~won]
            adaptive_s = time.perf_counter() - adapt_t0
            runs.append((ADAPTIVE, x_adaptive))
            for attack_name, x_adv in runs:
                pred, flagged, scores = _verdicts(detector, model, x_adv, y, batch_size)
                robust = clean_ok & (flagged | (pred == y))
                changed = (x_adv != x).flatten(1).any(dim=1)
                fooled = clean_correct & changed & (pred != y)
                adaptive = attack_name == ADAPTIVE
                if adaptive:
                    robust = robust & robust_all  # per-sample worst case over every attack run
                else:
                    robust_all &= robust
                k_rob = int(robust.sum())
                lo, hi = proportion_ci(k_rob, len(y))
                out.summary.append(
                    {
                        **head,
                        "attack": attack_name,
                        "adaptive": adaptive,
                        "worst_case_over": "+".join([*adv_points, ADAPTIVE]) if adaptive else attack_name,
                        "adaptive_losses": "+".join(losses) if adaptive else "",
                        "n_fooled": int(fooled.sum()),
                        "tpr": float(flagged[fooled].float().mean()) if fooled.any() else float("nan"),
                        "auc": _auc(negatives, scores[fooled.to(scores.device)]),
                        "undefended_robust_acc": float("nan")
                        if adaptive
                        else float((clean_correct & (pred == y)).float().mean()),
                        "robust_acc": k_rob / len(y) if len(y) else float("nan"),
                        "robust_ci_low": lo,
                        "robust_ci_high": hi,
                        "seconds": adaptive_s if adaptive else float("nan"),
                        "elapsed_s": time.perf_counter() - det_t0,
                    }
                )
                for i in range(len(y)):
                    out.samples.append(
                        {
                            "detector": detector.name,
                            "eps": float(eps),
                            "attack": attack_name,
                            "sample": i,
                            "label": int(y[i]),
                            "clean_pred": int(clean_pred[i]),
                            "clean_flagged": bool(clean_flag[i]),
                            "clean_score": float(clean_scores[i]),
                            "adv_pred": int(pred[i]),
                            "adv_flagged": bool(flagged[i]),
                            "adv_score": float(scores[i]),
                            "changed": bool(changed[i]),
                            "robust": bool(robust[i]),
                        }
                    )
    out.elapsed_s = time.perf_counter() - t0
    return out
