"""What the network looks at, before and after an attack: attribution maps of the clean and the adversarial
prediction, and how far the attack moves them.

Attribution methods (captum back-ends, none hand-written), each giving one H x W map per image:

- ``saliency``: vanilla gradient saliency (Simonyan, Vedaldi, Zisserman 2014, "Deep inside convolutional
  networks"): ``|d logit_c / d x|`` (captum ``Saliency``);
- ``integrated-gradients``: Integrated Gradients (Sundararajan, Taly, Yan 2017, "Axiomatic attribution for deep
  networks"), black baseline, ``ig_steps`` = 50 Gauss-Legendre steps (captum ``IntegratedGradients``);
- ``occlusion``: occlusion sensitivity (Zeiler & Fergus 2014, "Visualizing and understanding convolutional
  networks"): a gray (``occlusion_value`` = 0.5) square of side ``occlusion_window`` (default
  ``max(2, round(side / 7))``: 4 on 28x28, 2 on 8x8) slid with stride ``occlusion_stride`` (default half the
  window), the drop of the logit (captum ``Occlusion``);
- ``gradcam``: Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks") on the
  architecture's declared ``gradcam_layer`` (:func:`robustbench_cnn.models.gradcam_module`), ReLU of the
  weighted feature maps, bilinearly upsampled to the input size (captum ``LayerGradCam`` and
  ``LayerAttribution.interpolate``). A network without convolutions (``mlp``) has no Grad-CAM map.

The input-space maps are ``|attribution|`` summed over the colour channels, as Ghorbani et al. compare them; the
class attributed is the model's prediction on that image (clean: on ``x``; adversarial: on ``x_adv``).

Attribution shift (Ghorbani, Abid, Zou 2019, "Interpretation of neural networks is fragile", AAAI), per point
and method, between the clean and the adversarial map: the Spearman rank correlation of the pixels
(``scipy.stats.spearmanr``; NaN where a map is constant) and the top-k intersection, the fraction of the ``k``
most important pixels of the clean map that are among the ``k`` most important of the adversarial map
(``k = max(1, round(top_k_fraction * H * W))``, ``top_k_fraction`` = 0.1: 78 pixels on 28x28, 6 on 8x8).

The adversarial image of each clean-correct point is the attack's output, successful or not (the same budget for
every model, so a robust model is not credited with an unchanged input); points the model already misclassifies
are not attacked and get no shift (NaN).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_cnn.attacks import choose_targets, get_attack
from robustbench_cnn.core.model_utils import batched_logits, eval_mode
from robustbench_cnn.core.types import ThreatModel

__all__ = [
    "METHODS",
    "AttributionConfig",
    "Explanation",
    "attribution_maps",
    "explain",
    "rank_correlation",
    "shift_summary",
    "top_k_intersection",
]

#: The attribution methods, in the order of the grid's columns.
METHODS = ("saliency", "integrated-gradients", "occlusion", "gradcam")


@dataclass(frozen=True)
class AttributionConfig:
    """Settings of the attribution methods and of the top-k intersection (defaults in the module docstring)."""

    ig_steps: int = 50
    occlusion_window: int | None = None
    occlusion_stride: int | None = None
    occlusion_value: float = 0.5
    top_k_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.ig_steps < 1:
            raise ValueError(f"invalid --ig-steps (ig_steps) {self.ig_steps}: must be >= 1")
        for name in ("occlusion_window", "occlusion_stride"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"invalid {name} {value}: must be >= 1")
        if not 0.0 <= self.occlusion_value <= 1.0:
            raise ValueError(f"invalid occlusion_value {self.occlusion_value}: images are in [0, 1]")
        if not 0.0 < self.top_k_fraction <= 1.0:
            raise ValueError(f"invalid --top-k (top_k_fraction) {self.top_k_fraction}: must be in (0, 1]")

    def window(self, side: int) -> tuple[int, int]:
        """(window, stride) of the occlusion square on ``side`` x ``side`` images."""
        window = self.occlusion_window or max(2, round(side / 7))
        window = min(window, side)
        return window, self.occlusion_stride or max(1, window // 2)

    def top_k(self, pixels: int) -> int:
        return max(1, round(self.top_k_fraction * pixels))


def _input_map(attribution: torch.Tensor) -> torch.Tensor:
    """N x C x H x W attributions -> N x H x W: absolute values summed over the channels."""
    return attribution.detach().abs().sum(dim=1)


def attribution_maps(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    method: str,
    *,
    gradcam_layer: nn.Module | None = None,
    config: AttributionConfig | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Attribution maps N x H x W (float32, CPU) of class ``target[i]`` for the images ``x`` (N x C x H x W in
    [0, 1]) by ``method`` (one of :data:`METHODS`); ``gradcam`` needs ``gradcam_layer`` (a module of ``model``).
    The model is put in eval mode (and restored)."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    config = config or AttributionConfig()
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    if method == "gradcam" and gradcam_layer is None:
        raise ValueError("gradcam needs the model's Grad-CAM layer (the architecture declares none)")
    n, channels, height, width = x.shape
    maps = []
    with eval_mode(model):
        for xb, tb in zip(x.split(batch_size), target.split(batch_size)):
            xb, tb = xb.detach().clone().requires_grad_(True), tb.to(xb.device).long()
            if method == "saliency":
                attr = _input_map(Saliency(model).attribute(xb, target=tb, abs=True))
            elif method == "integrated-gradients":
                ig = IntegratedGradients(model)
                attr = _input_map(ig.attribute(xb, baselines=torch.zeros_like(xb), target=tb, n_steps=config.ig_steps))
            elif method == "occlusion":
                window, stride = config.window(min(height, width))
                attr = _input_map(
                    Occlusion(model).attribute(
                        xb,
                        sliding_window_shapes=(channels, window, window),
                        strides=(channels, stride, stride),
                        baselines=config.occlusion_value,
                        target=tb,
                    )
                )
            else:
                cam = LayerGradCam(model, gradcam_layer).attribute(xb, target=tb, relu_attributions=True)
                cam = LayerAttribution.interpolate(cam.detach(), (height, width), interpolate_mode="bilinear")
                attr = cam.clamp_min(0).sum(dim=1)
            maps.append(attr.float().cpu())
    return torch.cat(maps) if maps else torch.zeros(n, height, width)


def rank_correlation(clean: torch.Tensor, adv: torch.Tensor) -> np.ndarray:
    """Per-image Spearman rank correlation of two stacks of maps N x H x W (``scipy.stats.spearmanr`` of the
    flattened pixels); NaN where either map is constant."""
    from scipy.stats import spearmanr

    out = np.full(clean.shape[0], np.nan)
    a, b = clean.flatten(1).numpy(), adv.flatten(1).numpy()
    for i in range(a.shape[0]):
        if np.ptp(a[i]) == 0 or np.ptp(b[i]) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[i] = float(spearmanr(a[i], b[i]).statistic)
    return out


def top_k_intersection(clean: torch.Tensor, adv: torch.Tensor, k: int) -> np.ndarray:
    """Per-image fraction of the ``k`` largest pixels of ``clean`` that are among the ``k`` largest of ``adv``
    (Ghorbani et al. 2019), for maps N x H x W."""
    a, b = clean.flatten(1), adv.flatten(1)
    k = min(k, a.shape[1])
    top_a = a.topk(k, dim=1).indices
    top_b = b.topk(k, dim=1).indices
    hits = (top_a[:, :, None] == top_b[:, None, :]).any(dim=2).sum(dim=1)
    return (hits.float() / k).numpy().astype(float)


@dataclass
class Explanation:
    """Clean and adversarial images, predictions, attribution maps and their shift, for N points.

    ``maps[method] = (clean N x H x W, adversarial N x H x W)``; ``spearman[method]`` and ``top_k[method]`` are
    float arrays [N], NaN for points not attacked.
    """

    x: torch.Tensor
    x_adv: torch.Tensor
    labels: torch.Tensor
    pred_clean: torch.Tensor
    pred_adv: torch.Tensor
    targets: torch.Tensor  # -1 when untargeted
    attacked: torch.Tensor  # clean-correct (and target != label when targeted)
    success: torch.Tensor
    perturbation_norm: torch.Tensor
    threat: ThreatModel
    attack: str
    attack_params: dict[str, Any]
    target_policy: str  # "" when untargeted
    k: int
    maps: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    spearman: dict[str, np.ndarray] = field(default_factory=dict)
    top_k: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # methods the model does not allow (gradcam of an MLP)

    @property
    def methods(self) -> list[str]:
        return list(self.maps)

    def sample_records(self, sample_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """One record per point x method: predictions, success and the attribution shift."""
        ids = list(sample_ids) if sample_ids is not None else list(range(self.labels.numel()))
        rows = []
        for method in self.methods:
            for i in range(self.labels.numel()):
                rows.append(
                    {
                        "attack": self.attack,
                        "norm": self.threat.norm.value,
                        "eps": self.threat.eps,
                        "targeted": bool(self.target_policy),
                        "target_policy": self.target_policy,
                        "sample": i,
                        "sample_id": int(ids[i]),
                        "label": int(self.labels[i]),
                        "target": int(self.targets[i]),
                        "pred_clean": int(self.pred_clean[i]),
                        "pred_adv": int(self.pred_adv[i]),
                        "attacked": bool(self.attacked[i]),
                        "success": bool(self.success[i]),
                        "perturbation_norm": float(self.perturbation_norm[i]),
                        "method": method,
                        "spearman": float(self.spearman[method][i]),
                        "top_k_intersection": float(self.top_k[method][i]),
                        "k": self.k,
                    }
                )
        return rows


def explain(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack: str = "pgd",
    attack_params: dict[str, Any] | None = None,
    *,
    target_policy: str | None = None,
    methods: Sequence[str] = METHODS,
    gradcam_layer: nn.Module | None = None,
    config: AttributionConfig | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> Explanation:
    """Attack ``model`` on ``(x, y)`` within ``threat`` with the registered ``attack`` (untargeted, or targeted
    with ``target_policy`` random | least-likely | next | class:K, seeded by ``seed``), then compute each method's
    maps of the clean and the adversarial prediction and their shift (module docstring). ``gradcam_layer``: the
    module Grad-CAM weighs (None: ``gradcam`` is skipped and listed in ``skipped``)."""
    config = config or AttributionConfig()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown attribution method(s) {', '.join(unknown)}: use {', '.join(METHODS)}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    x, y = x.to(dev), y.to(dev).long()
    instance = get_attack(attack, **(attack_params or {}))
    if not x.shape[0]:
        raise ValueError("no images to explain")
    with eval_mode(model):
        logits = batched_logits(model, x, batch_size)
    targets = None
    if target_policy:
        if not instance.supports_targeted:
            raise ValueError(f"attack {instance.name!r} does not support targets")
        generator = torch.Generator().manual_seed(seed)
        targets = choose_targets(target_policy, logits.cpu(), y.cpu(), int(logits.shape[1]), generator).to(dev)
    result = instance(model, x, y, threat, targets=targets, seed=seed, batch_size=batch_size, clean_logits=logits)
    attacked = result.clean_correct & (targets != y if targets is not None else torch.ones_like(y, dtype=torch.bool))
    pred_clean = logits.argmax(1)
    skipped = [m for m in methods if m == "gradcam" and gradcam_layer is None]
    pixels = int(x.shape[2] * x.shape[3])
    explanation = Explanation(
        x=x.detach().cpu(),
        x_adv=result.x_adv.detach().cpu(),
        labels=y.cpu(),
        pred_clean=pred_clean.cpu(),
        pred_adv=result.pred_adv.cpu(),
        targets=result.target.cpu(),
        attacked=attacked.cpu(),
        success=result.success.cpu(),
        perturbation_norm=result.perturbation_norm.cpu(),
        threat=threat,
        attack=instance.name,
        attack_params=dict(instance.params),
        target_policy=target_policy or "",
        k=config.top_k(pixels),
        skipped=skipped,
    )
    mask = ~explanation.attacked.numpy()
    for method in methods:
        if method in skipped:
            continue
        kwargs = {"gradcam_layer": gradcam_layer, "config": config, "batch_size": batch_size}
        clean = attribution_maps(model, x, pred_clean, method, **kwargs)
        adv = attribution_maps(model, result.x_adv.to(dev), result.pred_adv.to(dev), method, **kwargs)
        explanation.maps[method] = (clean, adv)
        rho, inter = rank_correlation(clean, adv), top_k_intersection(clean, adv, explanation.k)
        rho[mask], inter[mask] = math.nan, math.nan
        explanation.spearman[method], explanation.top_k[method] = rho, inter
    return explanation


def shift_summary(samples: Any) -> Any:
    """Per model, attack, threat and method, from a per-sample shift table (``explain_samples``): points attacked
    and broken, the median Spearman correlation and the median top-k intersection over the attacked points (and
    over the broken ones). Returns a pandas DataFrame."""
    import pandas as pd

    keys = [k for k in ("model", "attack", "norm", "eps", "target_policy", "method") if k in samples]
    attacked = samples[samples["attacked"].astype(bool)]
    rows = []
    for key, group in attacked.groupby(keys, sort=True, dropna=False):
        broken = group[group["success"].astype(bool)]
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                "attacked": len(group),
                "broken": len(broken),
                "median_spearman": float(group["spearman"].median()),
                "median_top_k": float(group["top_k_intersection"].median()),
                "median_spearman_broken": float(broken["spearman"].median()) if len(broken) else math.nan,
                "median_top_k_broken": float(broken["top_k_intersection"].median()) if len(broken) else math.nan,
                "k": int(group["k"].iloc[0]),
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):  # the methods in the order of METHODS
        frame = frame.sort_values("method", key=lambda m: m.map({k: i for i, k in enumerate(METHODS)}), kind="stable")
    return frame.reset_index(drop=True)
