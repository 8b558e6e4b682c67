"""Feature squeezing (Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks",
NDSS 2018).

Squeezers: bit-depth reduction to ``bits`` bits per channel and a ``median`` x ``median`` median filter (each
channel). Score: the largest L1 distance between the softmax output on the input and on a squeezed input (the
paper's joint detector). Defaults: the paper's MNIST setting for 1-channel data (1 bit, 2x2 median) and its
CIFAR-10 setting for 3-channel data (5 bits, 2x2 median; its non-local means squeezer is not implemented).

For an adaptive attack the squeezers pass gradients through BPDA (identity in the backward pass), as in
Athalye, Carlini & Wagner 2018 and He et al. 2017, who broke this defense that way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.detectors.base import Detector, bpda
from robustbench_cnn.detectors.registry import DETECTORS


def reduce_bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``round(x * (2^bits - 1)) / (2^bits - 1)``: ``x`` in [0, 1] quantised to ``bits`` bits (Xu et al., eq. 1)."""
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Median over each ``size`` x ``size`` window of every channel, same shape as ``x``.

    Matches ``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode="reflect")`` for sizes 2 and 3 (the
    window starts ``size // 2`` pixels before the pixel; the border is extended by repeating the edge, which for
    these sizes is scipy's ``reflect``; an even window takes the upper of its two middle values, as scipy does).
    """
    if size <= 1:
        return x
    before, after = size // 2, (size - 1) // 2
    padded = F.pad(x, (before, after, before, after), mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # N x C x H x W x size x size
    flat = windows.reshape(*windows.shape[:4], size * size)
    return flat.sort(dim=-1).values[..., (size * size) // 2]


@DETECTORS.register("feature-squeezing")
class FeatureSqueezing(Detector):
    """Feature squeezing: max L1 distance of softmax outputs between the input and its squeezed versions.

    Paper: Xu, Evans & Qi, NDSS 2018 (https://arxiv.org/abs/1704.01155).

    Arguments:
        bits (int): bit depth of the bit-depth squeezer; 0 = the paper's choice for the data (1 bit for
            1-channel, 5 bits for 3-channel images) (default 0).
        median (int): median filter window (default 2, the paper's 2x2 for MNIST and CIFAR-10); 0 disables it.

    Fit: nothing (only the threshold is calibrated). Adaptive attacks: BPDA through both squeezers.
    """

    paper = "Xu, Evans & Qi, Feature Squeezing, NDSS 2018"
    needs_adversarial = False
    randomized = False
    bpda = True
    has_views = True
    defaults = {"bits": 0, "median": 2}

    def squeezers(self, channels: int) -> list:
        bits = int(self.params["bits"]) or (1 if channels == 1 else 5)
        out = [lambda t: reduce_bit_depth(t, bits)]
        if int(self.params["median"]) > 1:
            size = int(self.params["median"])
            out.append(lambda t: median_filter(t, size))
        return out

    def view_logits(self, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the input and of each squeezed input (BPDA through the squeezers): the score is small
        exactly when they agree."""
        return [model(x)] + [model(bpda(x, squeeze)) for squeeze in self.squeezers(x.shape[1])]

    def logits_and_score(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, *squeezed = self.view_logits(model, x)
        p = F.softmax(logits.float(), dim=1)
        distances = [(p - F.softmax(z.float(), dim=1)).abs().sum(dim=1) for z in squeezed]
        return logits, torch.stack(distances).amax(dim=0)
