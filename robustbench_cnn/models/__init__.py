"""CNN registry: every architecture is one decorated factory.

A factory has the signature ``factory(in_channels: int, num_classes: int, input_size: int, **kwargs)``
and returns a raw ``nn.Module`` that expects *normalized* input. :func:`build_model` wraps it in a
:class:`NormalizedModel` so that the public model takes images in [0, 1] (normalization lives inside).

Registering is ``@register_model("name", gradcam_layer="3")``: the properties of an architecture are declared
on its registration.

``cpu_layout`` is the memory layout the network runs in on the CPU: ``"contiguous"`` (NCHW, the default) or
``"channels_last"``, declared where measured faster (``benchmarks/cpu_layout.py``, ``docs/cpu_layout.md``: max
pooling and wide convolutions gain, small strided ones do not). :func:`build_model` sets it on the model it builds
as the attribute ``cpu_layout``; every attack call (``Attack.__call__``) and ``evaluation.evaluate`` switch to it for
their duration on the CPU (:func:`robustbench_cnn.core.model_utils.cpu_layout`). The values a network computes do
not depend on the layout beyond float rounding. Training keeps NCHW: training amplifies those last-bit differences
into different weights, so a layout switch there would change what a seed trains.

``gradcam_layer`` is the dotted path, inside the raw network, of the module whose feature
maps Grad-CAM (Selvaraju et al. 2017) weighs: the last convolution, or the last residual/dense/inception block
that ends in it; a function of the input size where the path depends on it (VGG drops pools on small inputs);
``None`` for a network without convolutions. :func:`gradcam_module` resolves it on a built model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")

#: A declared Grad-CAM layer: a dotted module path, a function of the input size giving one, or None (no conv).
GradcamLayer = str | Callable[[int], str] | None

#: The memory layouts an architecture may declare for the CPU.
CPU_LAYOUTS = ("contiguous", "channels_last")


def register_model(
    name: str, *, gradcam_layer: GradcamLayer, cpu_layout: str = "contiguous"
) -> Callable[[ModelFactory], ModelFactory]:
    """Register an architecture factory under ``name`` with its declared properties (set as attributes of the
    factory): ``gradcam_layer`` and ``cpu_layout`` (see the module docstring)."""
    if cpu_layout not in CPU_LAYOUTS:
        raise ValueError(f"cpu_layout {cpu_layout!r} of {name!r} is not one of {', '.join(CPU_LAYOUTS)}")

    def decorator(factory: ModelFactory) -> ModelFactory:
        factory.gradcam_layer = gradcam_layer  # type: ignore[attr-defined]
        factory.cpu_layout = cpu_layout  # type: ignore[attr-defined]
        return MODELS.register(name)(factory)

    return decorator


def declared_cpu_layout(arch: str) -> str:
    """The memory layout ``arch`` declares for the CPU (``contiguous`` or ``channels_last``)."""
    return MODELS.get(arch).cpu_layout  # type: ignore[attr-defined]


def gradcam_layer_name(arch: str, input_size: int) -> str | None:
    """The dotted path (in the raw network) of ``arch``'s declared Grad-CAM layer for ``input_size`` images, or
    None for an architecture without convolutions."""
    declared = MODELS.get(arch).gradcam_layer  # type: ignore[attr-defined]
    return declared(input_size) if callable(declared) else declared


def gradcam_module(model: nn.Module, arch: str, input_size: int) -> nn.Module | None:
    """The module of ``model`` (a :class:`NormalizedModel` or the raw network of ``arch``) whose feature maps
    Grad-CAM weighs, from the architecture's declared ``gradcam_layer``; None where it declares none."""
    path = gradcam_layer_name(arch, input_size)
    if path is None:
        return None
    net = model.net if isinstance(model, NormalizedModel) else model
    try:
        return net.get_submodule(path)
    except AttributeError:
        raise ValueError(f"{arch} declares gradcam_layer {path!r} but the model has no such module") from None


class NormalizedModel(nn.Module):
    """``net((x - mean) / std)`` for images ``x`` in [0, 1]; mean/std are buffers saved with the weights.

    ``cpu_layout``: the memory layout the network runs in on the CPU (:func:`build_model` sets its architecture's
    declaration; ``contiguous`` otherwise)."""

    cpu_layout: str = "contiguous"

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        channels = len(mean)
        if len(std) != channels:
            raise ValueError("mean and std must have one value per channel")
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, channels, 1, 1))

    @property
    def in_channels(self) -> int:
        return int(self.mean.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def head_module(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classifier head: the last ``nn.Linear`` in registration order, as (parent, attr name, layer). A network
    that declares ``single_head = False`` (an ensemble: one head per member) has none."""
    for module in model.modules():
        if getattr(module, "single_head", True) is False:
            raise ValueError(f"{type(module).__name__} has one classifier head per member, not one head")
    found: tuple[nn.Module, str, nn.Linear] | None = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier head")
    return found


def build_model(
    arch: str,
    *,
    in_channels: int,
    num_classes: int,
    input_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **arch_kwargs: Any,
) -> NormalizedModel:
    """Build a registered architecture for the given input and wrap it with normalization.

    ``mean``/``std`` default to 0 and 1 per channel (no normalization).
    """
    factory = MODELS.get(arch)
    net = factory(in_channels=in_channels, num_classes=num_classes, input_size=input_size, **arch_kwargs)
    mean = list(mean) if mean is not None else [0.0] * in_channels
    std = list(std) if std is not None else [1.0] * in_channels
    if len(mean) != in_channels:
        raise ValueError(f"mean has {len(mean)} values but the model has {in_channels} input channels")
    model = NormalizedModel(net, mean, std)
    model.cpu_layout = factory.cpu_layout
    return model


def build_for_dataset(arch: str, info: Any, *, normalize: bool = True, **arch_kwargs: Any) -> NormalizedModel:
    """:func:`build_model` for the images and classes a dataset's ``info`` describes (``channels``, ``num_classes``,
    ``size``, ``mean``, ``std``: :class:`robustbench_cnn.data.DatasetInfo`), normalized with its mean and std unless
    ``normalize`` is False (raw [0, 1] pixels)."""
    return build_model(
        arch,
        in_channels=info.channels,
        num_classes=info.num_classes,
        input_size=info.size,
        mean=list(info.mean) if normalize else None,
        std=list(info.std) if normalize else None,
        **arch_kwargs,
    )


# Registration happens by explicit imports (no star imports).
from robustbench_cnn.models import ensemble as _ensemble  # noqa: E402,F401
from robustbench_cnn.models import resnets as _resnets  # noqa: E402,F401
from robustbench_cnn.models import small as _small  # noqa: E402,F401
from robustbench_cnn.models import torchvision_nets as _torchvision_nets  # noqa: E402,F401
