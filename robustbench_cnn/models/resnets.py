"""CIFAR residual networks of the adversarial-training literature (no torchvision implementation).

Both use a 3x3/1 stem and global average pooling, so they run unchanged on 8x8, 28x28 and 32x32 inputs
(and larger). The last ``nn.Linear`` (``linear`` / ``fc``) is the classifier head.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.models import register_model
from robustbench_cnn.models.small import arch_options


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3; a 1x1 conv shortcut on the pre-activated input when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for small images: 3x3/1 stem, four stages (64-128-256-512), BN-ReLU, pool, linear."""

    def __init__(self, blocks: tuple[int, ...], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 64
        for stage, n in enumerate(blocks):
            planes = 64 * 2**stage
            for i in range(n):
                layers.append(PreActBlock(in_planes, planes, stride=2 if stage > 0 and i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@register_model("preact_resnet18", gradcam_layer="layers", cpu_layout="channels_last")
def preact_resnet18(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """PreAct ResNet-18 (He, Zhang, Ren, Sun 2016, "Identity mappings in deep residual networks"), the CIFAR
    variant of Wong, Rice, Kolter 2020 and Rice, Wong, Kolter 2020 (fast_adversarial ``PreActResNet18``).

    3x3/1 stem, [2, 2, 2, 2] pre-activation blocks of 64-128-256-512 channels, final BN-ReLU, global
    average pooling (instead of the fixed 4x4 pool, so any input size works), linear head; PyTorch's
    default initialization as in the reference code. 11,172,170 parameters at 3x32x32, 10 classes.
    """
    arch_options("preact_resnet18", kwargs)
    return PreActResNet((2, 2, 2, 2), in_channels, num_classes)


class WideBasicBlock(nn.Module):
    """WRN block: BN-ReLU-conv3x3, BN-ReLU-(dropout)-conv3x3; a 1x1 conv shortcut on the pre-activated input
    when the width or stride changes (as in the TRADES / Rice et al. code)."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for CIFAR: 3x3 stem (16), three groups of (depth-4)/6 blocks of
    16k-32k-64k channels (strides 1, 2, 2), BN-ReLU, global average pooling, linear."""

    def __init__(self, depth: int, widen_factor: int, dropout: float, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"wide_resnet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"wide_resnet widen_factor must be a positive integer, got {widen_factor}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = 16
        for group, planes in enumerate(widths):
            for i in range(n):
                stride = 2 if group > 0 and i == 0 else 1
                layers.append(WideBasicBlock(in_planes, planes, stride, dropout))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():  # the reference initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@register_model("wide_resnet", gradcam_layer="layers", cpu_layout="channels_last")
def wide_resnet(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """Wide ResNet (Zagoruyko, Komodakis 2016, "Wide residual networks"), the CIFAR version used by Madry et
    al. 2018, Zhang et al. 2019 (TRADES) and Rice et al. 2020.

    Options: ``depth`` (6n+4, default 28), ``widen_factor`` (default 10), ``dropout`` (default 0.0).
    WRN-28-10 has 36,479,194 parameters at 3x32x32, 10 classes; WRN-16-4 has 2,748,890. Global average
    pooling replaces the fixed 8x8 pool so that any input size works.
    """
    opts = arch_options("wide_resnet", kwargs, depth=28, widen_factor=10, dropout=0.0)
    return WideResNet(int(opts["depth"]), int(opts["widen_factor"]), float(opts["dropout"]), in_channels, num_classes)
