"""Intermediate features of a classifier, read with forward hooks during its ordinary forward pass.

A detector reads the classifier's own activations: the *penultimate* features (the input of the last ``nn.Linear``,
the classifier head of every registered architecture) or the *last convolution's* output map. Both come from the
same forward pass that gives the logits, so a detector score and the logits share one graph (what the adaptive
attack differentiates).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: Where a detector reads: ``penultimate`` (input of the last Linear) or ``conv`` (output of the last Conv2d,
#: falling back to the penultimate features for a network without convolutions).
LAYERS = ("penultimate", "conv")


def _last(model: nn.Module, kind: type[nn.Module]) -> nn.Module | None:
    found = None
    for module in model.modules():
        if isinstance(module, kind):
            found = module
    return found


def logits_and_features(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits N x K, features N x ...)`` of one forward pass of ``model`` on ``x``; the features are the
    ``layer`` activations (see :data:`LAYERS`), differentiable in ``x`` when autograd is on."""
    if layer not in LAYERS:
        raise ValueError(f"invalid feature layer {layer!r}: use one of {', '.join(LAYERS)}")
    captured: list[torch.Tensor] = []
    conv = _last(model, nn.Conv2d) if layer == "conv" else None
    if conv is not None:

        def keep_output(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            captured.append(out)

        handle = conv.register_forward_hook(keep_output)
    else:
        head = _last(model, nn.Linear)
        if head is None:
            raise ValueError("the model has no nn.Linear head: a feature detector cannot read its features")

        def keep_input(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            captured.append(inp[0])

        handle = head.register_forward_pre_hook(keep_input)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"the {layer} layer was not run by the model's forward pass")
    return logits, captured[-1]


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fn`` applied to ``x`` in mini-batches of ``batch_size`` without autograd, concatenated."""
    with torch.no_grad():
        return torch.cat([fn(xb) for xb in x.split(batch_size)]) if len(x) else x.new_zeros(0)
