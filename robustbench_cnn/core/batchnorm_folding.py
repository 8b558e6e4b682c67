"""Batch norm folded into the convolution before it, for the gradient passes of an attack.

In eval mode a ``BatchNorm2d`` is a fixed affine map per channel (its running statistics, weight and bias), so a
``Conv2d`` followed by it is one convolution with rescaled weights and a shifted bias: the usual inference fusion
(torch.fx's ``fuse``, ``torch.nn.utils.fusion.fuse_conv_bn_eval``). The folded network computes the same function
up to float rounding and spends one elementwise pass less per folded layer, forward and backward, which is most of a
batch-norm CNN's non-convolution time on the CPU (a CIFAR-10 ResNet-18's forward+backward to the input: about 12%
less; ``docs/curves.md``).

Gradient attacks run their steps on the folded copy (``Attack.__call__``, for the attacks that declare
``fast_gradient_kernels``); the clean prediction and the verdict on each adversarial example stay the given model's, so
a reported success is always the model's own. Training never folds: its batch norm is in train mode and its weights
change every step.
"""

from __future__ import annotations

from collections import Counter

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> int:
    """How many batch-norm modules ``model`` has."""
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has forward or forward-pre hooks of its own."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def folded_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which each ``Conv2d -> BatchNorm2d`` pair (also ``Linear -> BatchNorm1d``; the first
    layer's output read by the batch norm only, running statistics tracked) is one layer.

    ``model`` itself when a submodule is not in eval mode, when it has no batch norm, when a module has forward hooks
    (a traced copy may drop what they do), when a convolution, linear layer or batch norm is called more than once
    (shared weights: folding one call site would change the others), when no pair folds, or when torch.fx cannot
    trace it symbolically (data-dependent control flow in a bring-your-own model, for example). The copy's
    parameters require gradients as the model's do; the model is not changed.
    """
    before = batchnorm_layers(model)
    if before == 0 or any(m.training or has_hooks(m) for m in model.modules()):
        return model
    from torch import fx
    from torch.fx.experimental.optimization import fuse

    try:
        traced = fx.symbolic_trace(model)  # shares the model's modules; fuse below folds a deep copy
    except Exception:  # noqa: BLE001 - any tracing failure (TraceError, TypeError, ...) means: keep the model as it is
        return model
    modules = dict(traced.named_modules())
    calls = Counter(n.target for n in traced.graph.nodes if n.op == "call_module")
    foldable = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, _BatchNorm)
    if any(count > 1 and isinstance(modules[t], foldable) for t, count in calls.items()):
        return model
    folded = fuse(traced, no_trace=True)
    return folded if batchnorm_layers(folded) < before else model
