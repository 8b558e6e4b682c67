"""ImageNet architectures from ``torchvision.models`` (always ``weights=None``), adapted for small images.

Rule shared by every factory here: for ``input_size >= IMAGENET_STEM_MIN_SIZE`` (64) the torchvision
network is used as defined, only its first convolution rebuilt for ``in_channels``. Below that
(8x8 digits, 28x28 MNIST, 32x32 CIFAR) the stem and pooling are adapted so that no feature map reaches
0x0 and the small image is not thrown away by an ImageNet stem; the blocks themselves are torchvision's.
Extra ``**kwargs`` go to the torchvision constructor (e.g. ``dropout``); unknown ones raise
:class:`~robustbench_cnn.core.errors.ArchOptionError` (a ``TypeError``) before anything is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.googlenet import BasicConv2d
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers as vgg_make_layers

from robustbench_cnn.models import register_model
from robustbench_cnn.models.small import check_arch_options

IMAGENET_STEM_MIN_SIZE = 64
"""Inputs at least this large keep torchvision's ImageNet stem and down-sampling unchanged."""


def _small(input_size: int) -> bool:
    return input_size < IMAGENET_STEM_MIN_SIZE


def _conv_like(conv: nn.Conv2d, in_channels: int, init: Callable[[torch.Tensor], Any] | None = None) -> nn.Conv2d:
    """``conv`` rebuilt for ``in_channels`` input channels; ``init`` (weight, zero bias) or PyTorch's default."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    if init is not None:
        init(new.weight)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    return new


def _tv_options(arch: str, cls: type, kwargs: dict[str, Any], fixed: tuple[str, ...] = ("num_classes",)) -> None:
    """Refuse ``kwargs`` that torchvision's ``cls`` does not take, or that this factory sets itself (``fixed``)."""
    params = inspect.signature(cls.__init__).parameters.values()
    accepted = [
        p.name
        for p in params
        if p.name != "self" and p.name not in fixed and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    check_arch_options(arch, kwargs, accepted)


def _kaiming_fan_out(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


@register_model("alexnet", gradcam_layer="features.10", cpu_layout="channels_last")
def alexnet(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """AlexNet (Krizhevsky, Sutskever, Hinton 2012), torchvision's single-tower variant.

    Small inputs (< 64): the 11x11/4 stem becomes a 3x3/1 conv (pad 1) and the three 3x3/2 max-pools
    become 2x2/2 (32 -> 4x4, 28 -> 3x3, 8 -> 1x1 before pooling); the adaptive average pool outputs
    2x2 instead of 6x6 (1x1 below 16x16) and the first classifier Linear shrinks to 256*2*2 -> 4096.
    The 4096-4096 classifier widths are kept (23,468,874 parameters at 3x32x32, 10 classes).
    """
    _tv_options("alexnet", tvm.AlexNet, kwargs)
    net = tvm.alexnet(weights=None, num_classes=num_classes, **kwargs)
    if not _small(input_size):
        net.features[0] = _conv_like(net.features[0], in_channels)
        return net
    net.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
    for i, layer in enumerate(net.features):
        if isinstance(layer, nn.MaxPool2d):
            net.features[i] = nn.MaxPool2d(kernel_size=2, stride=2)
    pooled = 2 if input_size >= 16 else 1
    net.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
    net.classifier[1] = nn.Linear(256 * pooled * pooled, net.classifier[1].out_features)
    return net


def _vgg_cfg(cfg_name: str, input_size: int) -> list[str | int]:
    """torchvision's VGG configuration ``cfg_name``; below 64x64 a max-pool that would take the map below 1x1 is
    dropped."""
    if not _small(input_size):
        return list(vgg_cfgs[cfg_name])
    cfg: list[str | int] = []
    side = input_size
    for v in vgg_cfgs[cfg_name]:
        if v == "M":
            if side // 2 < 1:
                continue  # this pool would empty the map: drop it
            side //= 2
        cfg.append(v)
    return cfg


def _vgg_last_conv(cfg_name: str) -> Callable[[int], str]:
    """The Grad-CAM layer of VGG ``cfg_name`` with batch norm: ``features.K``, its last convolution, whose index
    depends on the input size through the dropped pools (each conv is conv, BN, ReLU; each pool one module)."""

    def layer(input_size: int) -> str:
        cfg = _vgg_cfg(cfg_name, input_size)
        modules = sum(3 if v != "M" else 1 for v in cfg)
        return f"features.{modules - 3 - (1 if cfg[-1] == 'M' else 0)}"

    return layer


def _vgg(cfg_name: str, in_channels: int, num_classes: int, input_size: int, kwargs: dict[str, Any]) -> nn.Module:
    _tv_options(
        {"A": "vgg11_bn", "D": "vgg16_bn"}[cfg_name], tvm.VGG, kwargs, fixed=("features", "num_classes", "init_weights")
    )
    if not _small(input_size):
        builder = {"A": tvm.vgg11_bn, "D": tvm.vgg16_bn}[cfg_name]
        net = builder(weights=None, num_classes=num_classes, **kwargs)
        net.features[0] = _conv_like(net.features[0], in_channels, _kaiming_fan_out)
        return net
    features = vgg_make_layers(_vgg_cfg(cfg_name, input_size), batch_norm=True)
    features[0] = nn.Conv2d(in_channels, features[0].out_channels, kernel_size=3, padding=1)
    dropout = kwargs.get("dropout", 0.5)
    with torch.device("meta"):  # don't allocate the 120M-parameter ImageNet classifier replaced below
        net = tvm.VGG(features, num_classes=num_classes, init_weights=False, **kwargs)
    net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    net.classifier = nn.Sequential(
        nn.Linear(512, 512),
        nn.ReLU(True),
        nn.Dropout(p=dropout),
        nn.Linear(512, 512),
        nn.ReLU(True),
        nn.Dropout(p=dropout),
        nn.Linear(512, num_classes),
    )
    # torchvision's VGG initialization, applied once to the final modules.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            _kaiming_fan_out(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return net


@register_model("vgg11_bn", gradcam_layer=_vgg_last_conv("A"), cpu_layout="channels_last")
def vgg11_bn(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """VGG-11 with batch norm (Simonyan, Zisserman 2015, configuration A), torchvision's ``VGG``.

    Small inputs (< 64): a max-pool is dropped when it would take the map below 1x1 (32 keeps all 5,
    28 keeps 4, 8 keeps 3); global average pooling to 1x1 and the CIFAR-style classifier
    512 -> 512 -> 512 -> ``num_classes`` replace the 25088 -> 4096 -> 4096 ImageNet head (which would be
    ~120M parameters for a 1x1 map). 9,756,426 parameters at 3x32x32, 10 classes.
    """
    return _vgg("A", in_channels, num_classes, input_size, kwargs)


@register_model("vgg16_bn", gradcam_layer=_vgg_last_conv("D"), cpu_layout="channels_last")
def vgg16_bn(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """VGG-16 with batch norm (Simonyan, Zisserman 2015, configuration D), torchvision's ``VGG``.

    Small inputs (< 64): same adaptation as ``vgg11_bn`` (max-pools dropped below 1x1, global average
    pooling, 512 -> 512 -> 512 -> ``num_classes`` classifier). 15,253,578 parameters at 3x32x32, 10 classes.
    """
    return _vgg("D", in_channels, num_classes, input_size, kwargs)


@register_model("googlenet", gradcam_layer="inception5b", cpu_layout="channels_last")
def googlenet(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions"), torchvision's
    ``GoogLeNet`` with ``aux_logits=False``, ``transform_input=False``, ``init_weights=True``.

    Small inputs (< 64): the 7x7/2 stem conv becomes a 3x3/1 conv (pad 1) and the two stem max-pools
    (``maxpool1``, ``maxpool2``) are removed, as in the usual CIFAR GoogLeNet; the inception blocks and
    the two remaining max-pools (32 -> 16 -> 8, 8 -> 4 -> 2) are torchvision's. 5,602,474 parameters at
    3x32x32, 10 classes.
    """
    _tv_options(
        "googlenet", tvm.GoogLeNet, kwargs, fixed=("num_classes", "aux_logits", "transform_input", "init_weights")
    )
    net = tvm.GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True, **kwargs)

    def init(w: torch.Tensor) -> None:
        nn.init.trunc_normal_(w, mean=0.0, std=0.01, a=-2, b=2)

    if not _small(input_size):
        net.conv1.conv = _conv_like(net.conv1.conv, in_channels, init)
        return net
    net.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
    init(net.conv1.conv.weight)
    net.maxpool1 = nn.Identity()
    net.maxpool2 = nn.Identity()
    return net


@register_model("resnet18", gradcam_layer="layer4", cpu_layout="channels_last")
def resnet18(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """ResNet-18 (He, Zhang, Ren, Sun 2016, "Deep residual learning for image recognition"),
    torchvision's ``resnet18``.

    Small inputs (< 64): the CIFAR stem of the robustness literature: the 7x7/2 conv becomes a 3x3/1
    conv (pad 1, no bias) and the stem max-pool is removed (32 -> 4x4 after layer4, 8 -> 1x1).
    11,173,962 parameters at 3x32x32, 10 classes.
    """
    _tv_options("resnet18", tvm.ResNet, kwargs, fixed=("block", "layers", "num_classes"))
    net = tvm.resnet18(weights=None, num_classes=num_classes, **kwargs)
    if not _small(input_size):
        net.conv1 = _conv_like(net.conv1, in_channels, _kaiming_fan_out)
        return net
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    _kaiming_fan_out(net.conv1.weight)
    net.maxpool = nn.Identity()
    return net


@register_model("densenet121", gradcam_layer="features.denseblock4", cpu_layout="channels_last")
def densenet121(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """DenseNet-121 (Huang, Liu, van der Maaten, Weinberger 2017, "Densely connected convolutional
    networks"), torchvision's ``densenet121`` (growth 32, blocks 6-12-24-16).

    Small inputs (< 64): the 7x7/2 stem conv becomes a 3x3/1 conv (pad 1) and the stem max-pool is
    removed; the three transition average-pools remain (32 -> 4x4 in the last block, 8 -> 1x1).
    6,956,426 parameters at 3x32x32, 10 classes.
    """
    _tv_options(
        "densenet121", tvm.DenseNet, kwargs, fixed=("growth_rate", "block_config", "num_init_features", "num_classes")
    )
    net = tvm.densenet121(weights=None, num_classes=num_classes, **kwargs)
    init = nn.init.kaiming_normal_  # torchvision's DenseNet initialization
    if not _small(input_size):
        net.features.conv0 = _conv_like(net.features.conv0, in_channels, init)
        return net
    net.features.conv0 = nn.Conv2d(
        in_channels, net.features.conv0.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    init(net.features.conv0.weight)
    net.features.pool0 = nn.Identity()
    return net


@register_model("mobilenet_v2", gradcam_layer="features.18", cpu_layout="channels_last")
def mobilenet_v2(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov, Chen 2018, "MobileNetV2: inverted residuals and
    linear bottlenecks"), torchvision's ``mobilenet_v2`` (width 1.0).

    Small inputs (< 64): the stem conv has stride 1 instead of 2 and the first 24-channel stage has
    stride 1 instead of 2 (the usual CIFAR MobileNetV2), so the total stride is 8 instead of 32
    (32 -> 4x4, 8 -> 1x1). 2,236,682 parameters at 3x32x32, 10 classes.
    """
    _tv_options("mobilenet_v2", tvm.MobileNetV2, kwargs)
    if not _small(input_size):
        net = tvm.mobilenet_v2(weights=None, num_classes=num_classes, **kwargs)
        stem = net.features[0][0]
        net.features[0][0] = _conv_like(stem, in_channels, lambda w: nn.init.kaiming_normal_(w, mode="fan_out"))
        return net
    setting = [
        # t, c, n, s  (torchvision's default with the 24-channel stage at stride 1)
        [1, 16, 1, 1],
        [6, 24, 2, 1],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]
    kwargs.setdefault("inverted_residual_setting", setting)
    net = tvm.mobilenet_v2(weights=None, num_classes=num_classes, **kwargs)
    stem = net.features[0][0]
    net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
    return net
