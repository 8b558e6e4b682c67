"""Model utilities shared by every layer that runs a network: train/eval mode switches, the CPU memory layout and
batched logits.

The context managers restore each submodule's own ``training`` flag (and, for :func:`eval_mode`, each parameter's
``requires_grad``; for :func:`cpu_layout`, the memory layout) on exit, also on errors, so a model with a mixed state
comes back exactly as it was.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and freeze the parameters (``requires_grad`` off); restore both on exit.

    What an attack needs: deterministic batch norm and dropout, and input gradients only.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


@contextlib.contextmanager
def cpu_layout(model: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """On the CPU, run ``model`` in the memory layout its architecture declares (its ``cpu_layout`` attribute,
    ``channels_last`` or ``contiguous``; see :mod:`robustbench_cnn.models`); back to NCHW on exit.

    Only a model whose 4-D parameters and buffers are all NCHW-contiguous is converted (and restored), so a model the
    caller keeps in channels_last, or one already converted by an enclosing call, is left as it is. On other
    devices nothing changes (``TrainConfig.channels_last`` chooses the layout on CUDA).
    """
    tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if t.dim() == 4]
    convert = (
        torch.device(device).type == "cpu"
        and getattr(model, "cpu_layout", "contiguous") == "channels_last"
        and bool(tensors)
        and all(t.is_contiguous() for t in tensors)
    )
    if not convert:
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train (``training=True``) or eval mode, parameters untouched; restore each submodule's
    flag on exit. What a training recipe's inner maximisation needs (TRADES and MART run it in eval mode)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@torch.no_grad()
def batched_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    """Logits of ``x`` (N x K) in mini-batches of ``batch_size``, without building a graph; None when ``x`` is
    empty. ``ValueError`` when the model does not return N x K logits."""
    if not x.shape[0]:
        return None
    out = []
    for xb in x.split(batch_size):
        logits = model(xb)
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits N x K, got shape {tuple(logits.shape)}")
        out.append(logits)
    return torch.cat(out)
