"""A learned detector on intermediate features (Metzen, Genewein, Fischer & Bischoff, "On Detecting Adversarial
Perturbations", ICLR 2017).

A small binary "detector subnetwork" reads a feature map of the (frozen) classifier and is trained to tell clean
training points from their adversarial examples (PGD of the training points, made by the caller). Default head for
a convolutional map (the last convolution's output): conv3x3-``width`` -> ReLU -> global average pool -> linear ->
one logit; for a vector of features: linear-``width`` -> ReLU -> linear. Training: Adam (lr ``lr``), ``epochs``
passes over the cached features, batches of 128, binary cross-entropy, balanced classes. Score: the head's logit.
Simplification: the paper's detector is deeper (a few conv layers with pooling) and also trained against a
dynamic adversary; ours is the static one. The score is differentiable; an adaptive attack descends it directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.detectors.base import Detector
from robustbench_cnn.detectors.features import LAYERS, batched, logits_and_features
from robustbench_cnn.detectors.registry import DETECTORS


def make_head(shape: tuple[int, ...], width: int) -> nn.Module:
    """The detector subnetwork for features of ``shape`` (C x H x W or D)."""
    if len(shape) == 3:
        return nn.Sequential(
            nn.Conv2d(shape[0], width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, 1),
        )
    return nn.Sequential(
        nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), width), nn.ReLU(), nn.Linear(width, 1)
    )


@DETECTORS.register("learned")
class LearnedDetector(Detector):
    """A detector subnetwork on the classifier's intermediate features, trained on clean vs adversarial points.

    Paper: Metzen, Genewein, Fischer & Bischoff, ICLR 2017 (https://arxiv.org/abs/1702.04267).

    Arguments:
        layer (str): ``conv`` (the last convolution's output map, default) or ``penultimate``.
        width (int): channels / units of the head's hidden layer (default 32).
        epochs (int): training passes over the clean + adversarial features (default 30).
        lr (float): Adam learning rate (default 1e-3).

    Fit: needs adversarial examples of the training points (``needs_adversarial``).
    """

    paper = "Metzen, Genewein, Fischer & Bischoff, On Detecting Adversarial Perturbations, ICLR 2017"
    needs_adversarial = True
    randomized = False
    bpda = False
    defaults = {"layer": "conv", "width": 32, "epochs": 30, "lr": 1e-3}

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.params["layer"] not in LAYERS:
            raise ValueError(
                f"invalid layer {self.params['layer']!r} for detector 'learned': use one of {', '.join(LAYERS)}"
            )
        self.head: nn.Module | None = None

    def fit(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_adv: torch.Tensor | None,
        generator: torch.Generator,
        batch_size: int = 500,
    ) -> None:
        if x_adv is None or not len(x_adv) or x_adv.shape[1:] != x.shape[1:]:
            raise ValueError("detector 'learned' needs adversarial examples of its training points")
        layer = str(self.params["layer"])
        with eval_mode(model):
            clean = batched(lambda xb: logits_and_features(model, xb, layer)[1], x, batch_size)
            adv = batched(lambda xb: logits_and_features(model, xb, layer)[1], x_adv, batch_size)
        feats = torch.cat([clean, adv]).detach()
        labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(adv))]).to(feats.device)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = make_head(tuple(feats.shape[1:]), int(self.params["width"])).to(feats.device)
        optimizer = torch.optim.Adam(head.parameters(), lr=float(self.params["lr"]))
        head.train()
        for _ in range(int(self.params["epochs"])):
            order = torch.randperm(len(feats), generator=generator).to(feats.device)
            for idx in order.split(128):
                loss = F.binary_cross_entropy_with_logits(head(feats[idx]).squeeze(1), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        head.eval()
        for p in head.parameters():
            p.requires_grad_(False)
        self.head = head

    def logits_and_score(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.head is None:
            raise ValueError("detector 'learned' is not fitted: call fit() first")
        logits, feats = logits_and_features(model, x, str(self.params["layer"]))
        return logits, self.head(feats).squeeze(1)
