"""Faster input gradients of a model's first convolution on the CPU, for attacks and training-time perturbations.

A gradient attack needs ``d loss / d x`` only: the parameters are frozen (``requires_grad`` off), so the backward
pass of each convolution computes just its input gradient (``convolution_backward`` with the mask
``[True, False, False]``). On the CPU, oneDNN's kernel for that gradient is slow when the layer's input has one to
three channels, such as an MNIST net's first layer: there it is the most expensive part of a whole PGD step
(figures in ``docs/measurements.md``).

:func:`fast_input_gradients` swaps, for the length of an attack, the convolution of each eligible ``nn.Conv2d`` for
one with the same forward (``F.conv2d``, bit for bit) and a backward that computes the input gradient another way:

- ``flip``: the transposed convolution written as a forward convolution with the flipped kernel
  (stride 1, at most 8 output channels: LeNet-5's first layer), when the layer runs in NCHW. In channels_last
  oneDNN's own input gradient of such a layer is that very computation (the same numbers, as fast), and the whole
  step ran 3-12% slower through ``flip`` (``docs/measurements.md``), so the layer keeps autograd's kernel there;
- ``fold``: one matrix product ``W^T @ grad_out`` per image and ``col2im`` (``F.fold``), for every other eligible
  layer.

Both equal autograd's gradient up to float rounding (tested against it, relative error ~1e-6). Eligible: an
``nn.Conv2d`` whose ``_conv_forward`` is the stock one, with ``groups == 1``, ``dilation == 1``, zero padding given
as numbers, frozen weight and bias, on the CPU, and either one input channel, or at most three input channels and at
least 64 output channels: the shapes where ``benchmarks/input_gradient_kernels.py`` found them faster at 1 and 2
threads and batch sizes 64 to 1000 (``docs/measurements.md``); elsewhere the layer keeps autograd's kernel. The rule
is fixed, not timed at run time, so a seeded attack gives the same result in every process.

A training recipe's inner maximisation (``defenses/perturb.py``) needs ``d loss / d x`` too, while the parameters
still require gradients for the training step that follows. ``fast_input_gradients(model, constant_parameters=True)``
treats them as constants for the length of the block (the layer reads them detached), so the same kernels serve
there; a loss computed inside such a block gives the eligible layers no parameter gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

#: ``flip`` serves stride-1 layers with at most this many output channels; ``fold`` the others.
FLIP_MAX_OUT_CHANNELS = 8
#: layers with 2 or 3 input channels take the fast path from this many output channels on.
RGB_MIN_OUT_CHANNELS = 64


def input_gradient_kernel(conv: nn.Conv2d) -> str | None:
    """``"flip"``, ``"fold"`` or None (autograd's own kernel) for this layer, by the fixed rule of the module
    docstring. Parameters that require gradients and the device are checked when the layer runs."""
    if type(conv)._conv_forward is not nn.Conv2d._conv_forward:
        return None
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        return None
    if isinstance(conv.padding, str):
        return None
    if conv.in_channels == 1 or (conv.in_channels <= 3 and conv.out_channels >= RGB_MIN_OUT_CHANNELS):
        kh, kw = conv.kernel_size
        ph, pw = conv.padding
        stride_one = tuple(conv.stride) == (1, 1)
        if stride_one and conv.out_channels <= FLIP_MAX_OUT_CHANNELS and ph <= kh - 1 and pw <= kw - 1:
            return "flip"
        return "fold"
    return None


def conv2d_input_grad(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    input_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    kernel: str,
) -> torch.Tensor:
    """``d <grad_out, conv2d(x, weight)> / d x`` for a convolution with ``groups = dilation = 1``, computed by
    ``kernel`` (``"flip"`` needs stride 1 and ``padding <= kernel size - 1``)."""
    kh, kw = weight.shape[-2:]
    if kernel == "flip":
        flipped = weight.flip(2, 3).transpose(0, 1)
        return F.conv2d(grad_out, flipped, padding=(kh - 1 - padding[0], kw - 1 - padding[1]))
    n, c_out = grad_out.shape[:2]
    cols = torch.matmul(weight.reshape(c_out, -1).t(), grad_out.reshape(n, c_out, -1))
    return F.fold(cols, input_size, (kh, kw), padding=padding, stride=stride)


def runs_channels_last(weight: torch.Tensor) -> bool:
    """Whether a convolution's 4-D weight is in channels_last memory (its input-channel stride is below its row
    stride). Read from the strides, since ``is_contiguous`` cannot tell the layouts apart with one input channel."""
    return weight.dim() == 4 and weight.stride(1) < weight.stride(2)


class _Conv2dInputGrad(torch.autograd.Function):
    """``F.conv2d`` forward; a backward that returns the input gradient only (weight and bias are frozen)."""

    generate_vmap_rule = True  # torch.func transforms (grad, vmap, jacrev) need setup_context and a vmap rule

    @staticmethod
    def forward(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        kernel: str,
    ) -> torch.Tensor:
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _, stride, padding, kernel = inputs
        ctx.save_for_backward(weight)
        ctx.save_for_forward(weight)
        ctx.input_size, ctx.stride, ctx.padding, ctx.kernel = tuple(x.shape[-2:]), stride, padding, kernel

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (weight,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input_grad(grad_out, weight, ctx.input_size, ctx.stride, ctx.padding, ctx.kernel)
        return grad_x, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, *_):  # forward-mode AD: the convolution is linear in x
        (weight,) = ctx.saved_tensors
        return F.conv2d(x_t, weight, None, ctx.stride, ctx.padding)


def _fast_conv_forward(conv: nn.Conv2d, kernel: str, constant_parameters: bool):
    stock = nn.Conv2d._conv_forward.__get__(conv)

    def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if constant_parameters:
            weight, bias = weight.detach(), None if bias is None else bias.detach()
        frozen = not weight.requires_grad and (bias is None or not bias.requires_grad)
        if kernel == "flip" and runs_channels_last(weight):
            return stock(x, weight, bias)
        # a batched, non-empty 4-D input only: conv2d_input_grad reads (N, C_out) from grad_out's first two dims;
        # under CPU autocast the stock layer picks the dtypes
        if not (
            frozen
            and x.requires_grad
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dim() == 4
            and x.shape[0] > 0
            and not torch.is_autocast_enabled("cpu")
        ):
            return stock(x, weight, bias)
        return _Conv2dInputGrad.apply(x, weight, bias, tuple(conv.stride), tuple(conv.padding), kernel)

    return conv_forward


@contextlib.contextmanager
def fast_input_gradients(
    model: nn.Module, enabled: bool = True, *, constant_parameters: bool = False
) -> Iterator[nn.Module]:
    """Within the block, every eligible ``nn.Conv2d`` of ``model`` computes its input gradient with the faster
    kernel of :func:`input_gradient_kernel`; the modules are restored on exit (also on errors). Forward outputs
    are unchanged. A layer whose weight requires gradients, or that runs on another device than the CPU, uses its
    stock convolution inside the block too, unless ``constant_parameters``: then every eligible layer reads its
    weight and bias detached (no parameter gradients flow from the block; a training recipe's perturbation)."""
    patched: list[nn.Conv2d] = []
    try:
        if enabled:
            for module in model.modules():
                if isinstance(module, nn.Conv2d) and "_conv_forward" not in module.__dict__:
                    kernel = input_gradient_kernel(module)
                    if kernel is not None:
                        module._conv_forward = _fast_conv_forward(module, kernel, constant_parameters)
                        patched.append(module)
        yield model
    finally:
        for module in patched:
            module.__dict__.pop("_conv_forward", None)
