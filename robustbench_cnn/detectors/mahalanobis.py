"""The Mahalanobis detector (Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018).

Class-conditional Gaussians with one tied covariance on the classifier's penultimate features, fitted on clean
training points (class means and the shared covariance, ``sklearn.covariance.EmpiricalCovariance`` on the
class-centred features, as the paper's code does). Score: the smallest Mahalanobis distance to a class mean
(the negative of the paper's confidence score M(x)), so higher means more anomalous. Simplifications: one layer
(the penultimate, not the paper's ensemble of layers with a logistic regression) and no input preprocessing
(noise magnitude 0). The score is differentiable; an adaptive attack descends it directly.
"""

from __future__ import annotations

import torch
from sklearn.covariance import EmpiricalCovariance
from torch import nn

from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.detectors.base import Detector
from robustbench_cnn.detectors.features import batched, logits_and_features
from robustbench_cnn.detectors.registry import DETECTORS


@DETECTORS.register("mahalanobis")
class Mahalanobis(Detector):
    """Mahalanobis distance to the closest class-conditional Gaussian (tied covariance) of penultimate features.

    Paper: Lee, Lee, Lee & Shin, NeurIPS 2018 (https://arxiv.org/abs/1807.03888).

    Arguments: none. Fit: class means and tied covariance on clean training points (labels ``y``).
    """

    paper = "Lee, Lee, Lee & Shin, Mahalanobis detector, NeurIPS 2018"
    needs_adversarial = False
    randomized = False
    bpda = False
    defaults: dict = {}

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.means: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None

    def fit(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_adv: torch.Tensor | None,
        generator: torch.Generator,
        batch_size: int = 500,
    ) -> None:
        with eval_mode(model):
            feats = batched(lambda xb: logits_and_features(model, xb, "penultimate")[1].flatten(1), x, batch_size)
        feats = feats.double().cpu()
        y = y.cpu()
        classes, inverse = torch.unique(y, return_inverse=True)  # classes without training points get no Gaussian
        means = torch.stack([feats[y == c].mean(dim=0) for c in classes])
        centred = feats - means[inverse]
        cov = EmpiricalCovariance(assume_centered=False).fit(centred.numpy())
        self.means = means.float()
        self.precision = torch.from_numpy(cov.precision_).float()

    def logits_and_score(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.means is None or self.precision is None:
            raise ValueError("detector 'mahalanobis' is not fitted: call fit() first")
        logits, feats = logits_and_features(model, x, "penultimate")
        f = feats.flatten(1).float()
        means, precision = self.means.to(f.device), self.precision.to(f.device)
        diff = f[:, None, :] - means[None, :, :]  # N x K x D
        dist = torch.einsum("nkd,de,nke->nk", diff, precision, diff)
        return logits, dist.amin(dim=1)
