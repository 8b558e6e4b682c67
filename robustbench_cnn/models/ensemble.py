"""An ensemble of networks of one architecture whose logits are averaged (e.g. a substitute ensemble)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robustbench_cnn.models import MODELS, register_model
from robustbench_cnn.models.small import arch_options


class LogitEnsemble(nn.Module):
    """The mean of the logits of several models (same inputs, same classes): the network of the ``ensemble``
    architecture, and the source a transfer attack crafts on when given several models. It has no single classifier
    head (``single_head``), so it cannot be fine-tuned by replacing one."""

    single_head = False

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


@register_model("ensemble", gradcam_layer=None)
def ensemble(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """``members`` networks of the registered architecture ``member_arch``, their logits averaged.

    Used for substitute ensembles: several substitutes trained on the same oracle labels, whose averaged logits a
    transfer attack crafts on (Papernot et al. 2017 train one; Tramer et al. 2018, "Ensemble Adversarial Training",
    and Liu et al. 2017, "Delving into Transferable Adversarial Examples", transfer from ensembles).

    Options: ``member_arch`` (default ``fastcnn``), ``members`` (default 3), ``member_kwargs`` (the member
    architecture's options, default none). The members share the ensemble's normalization. No Grad-CAM layer
    (there is one per member).
    """
    opts = arch_options("ensemble", kwargs, member_arch="fastcnn", members=3, member_kwargs={})
    if opts["member_arch"] == "ensemble":
        raise ValueError("an ensemble's members cannot be ensembles")
    factory = MODELS.get(opts["member_arch"])
    members = [
        factory(in_channels=in_channels, num_classes=num_classes, input_size=input_size, **dict(opts["member_kwargs"]))
        for _ in range(int(opts["members"]))
    ]
    return LogitEnsemble(members)
