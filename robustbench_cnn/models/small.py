"""Small CNNs from the robustness literature, sized for 8x8 to 32x32 images and quick CPU training.

Each factory takes ``(in_channels, num_classes, input_size, **kwargs)`` and returns a raw network that
expects normalized input; its last ``nn.Linear`` is the classifier head.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from robustbench_cnn.core.errors import ArchOptionError
from robustbench_cnn.core.types import parse_bool
from robustbench_cnn.models import register_model


def check_arch_options(arch: str, kwargs: dict[str, Any], accepted: Iterable[str]) -> None:
    """Refuse options of ``kwargs`` not in ``accepted`` with :class:`ArchOptionError` (a ``TypeError``)."""
    allowed = set(accepted)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        listing = ", ".join(sorted(allowed)) or "none"
        raise ArchOptionError(f"{arch} got unexpected option(s) {', '.join(unknown)} (accepted: {listing})")


def arch_options(arch: str, kwargs: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """``defaults`` updated by ``kwargs``; an option the architecture does not have is an
    :class:`ArchOptionError` (a ``TypeError``, reported by the CLI as one line)."""
    check_arch_options(arch, kwargs, defaults)
    return {**defaults, **kwargs}


@register_model("lenet5", gradcam_layer="3", cpu_layout="channels_last")
def lenet5(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document recognition").

    conv5x5-6 (pad 2) -> pool -> conv5x5-16 -> pool -> fc120 -> fc84 -> fc``num_classes``.
    Adaptations: ReLU and 2x2 max-pooling instead of tanh and trainable sub-sampling, full C3
    connectivity (the usual modern form); ``classic=True`` uses tanh and 2x2 average pooling, closer to
    the 1998 network (default False). The first conv is padded by 2, so 28x28 MNIST gives the
    classic 16x5x5 feature map (61,706 parameters for 10 classes); below 12x12 (8x8 digits) the second
    conv is padded by 2 too, so the map stays at least 1x1 (8x8 -> 16x2x2).
    """
    options = arch_options("lenet5", kwargs, classic=False)
    try:
        classic = parse_bool(options["classic"])
    except ValueError:
        raise ArchOptionError(f"lenet5 option classic={options['classic']!r}: must be true or false") from None
    pad2 = 0 if input_size >= 12 else 2
    side = ((input_size // 2) + 2 * pad2 - 4) // 2

    def act() -> nn.Module:
        return nn.Tanh() if classic else nn.ReLU(inplace=True)

    def pool() -> nn.Module:
        return nn.AvgPool2d(2) if classic else nn.MaxPool2d(2)

    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
        act(),
        pool(),
        nn.Conv2d(6, 16, kernel_size=5, padding=pad2),
        act(),
        pool(),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        act(),
        nn.Linear(120, 84),
        act(),
        nn.Linear(84, num_classes),
    )


@register_model("smallcnn", gradcam_layer="3", cpu_layout="channels_last")
def smallcnn(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """The MNIST network of Madry, Makelov, Schmidt, Tsipras, Vladu 2018 ("Towards deep learning models
    resistant to adversarial attacks", the MNIST challenge model).

    conv5x5-32 (pad 2) -> ReLU -> maxpool2 -> conv5x5-64 (pad 2) -> ReLU -> maxpool2 -> fc1024 -> ReLU
    -> fc``num_classes``; 28x28 gives the paper's 7*7*64 -> 1024 layer (3,274,634 parameters for 10
    classes). No adaptation: the flattened size follows the input (8x8 -> 2*2*64, 32x32 -> 8*8*64).
    """
    arch_options("smallcnn", kwargs)
    side = input_size // 2 // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, 1024),
        nn.ReLU(inplace=True),
        nn.Linear(1024, num_classes),
    )


@register_model("fastcnn", gradcam_layer="2")
def fastcnn(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """The MNIST network of Wong, Rice, Kolter 2020 ("Fast is better than free: revisiting adversarial
    training", the FGSM-RS MNIST model).

    conv4x4-16 (stride 2, pad 1) -> ReLU -> conv4x4-32 (stride 2, pad 1) -> ReLU -> flatten -> fc100 ->
    ReLU -> fc``num_classes``; 28x28 gives the paper's 32*7*7 -> 100 layer (166,406 parameters for 10
    classes). No adaptation: the flattened size follows the input (8x8 -> 32*2*2).
    """
    arch_options("fastcnn", kwargs)
    side = ((input_size - 2) // 2 + 1 - 2) // 2 + 1  # two 4x4/2 convs with padding 1
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(32 * side * side, 100),
        nn.ReLU(inplace=True),
        nn.Linear(100, num_classes),
    )


@register_model("mlp", gradcam_layer=None)
def mlp(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """The substitute of Papernot, McDaniel, Goodfellow, Jha, Celik, Swami 2017 ("Practical black-box attacks
    against machine learning", architecture A of their MNIST substitutes, also cleverhans' ``mnist_blackbox``).

    flatten -> fc200 -> ReLU -> fc200 -> ReLU -> fc``num_classes`` (199,210 parameters for 1x28x28, 10
    classes). Option ``hidden`` (default ``(200, 200)``) sets the hidden widths. Not a CNN: it is here as the
    proxy of the black-box attack, whose smooth, nearly linear gradients transfer well.
    """
    opts = arch_options("mlp", kwargs, hidden=(200, 200))
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * input_size * input_size
    for hidden in opts["hidden"]:
        layers += [nn.Linear(width, int(hidden)), nn.ReLU(inplace=True)]
        width = int(hidden)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("lenet-jeong", gradcam_layer="3", cpu_layout="channels_last")
def lenet_jeong(in_channels: int, num_classes: int, input_size: int, **kwargs: Any) -> nn.Module:
    """The MNIST LeNet of the randomized-smoothing literature: Jeong & Shin 2020 ("Consistency regularization for
    certified robustness of smoothed classifiers", NeurIPS 2020, ``code/archs/lenet.py``), whose MNIST table
    reproduces Cohen et al. 2019's Gaussian-noise baseline with it (Cohen et al. themselves ran CIFAR-10 and
    ImageNet only). It is the network of PyTorch's MNIST example.

    conv5x5-20 -> ReLU -> maxpool2 -> conv5x5-50 -> ReLU -> maxpool2 -> fc500 -> ReLU -> fc``num_classes``; 28x28
    gives the paper's 4*4*50 -> 500 layer (431,080 parameters for 10 classes). Their MNIST model has no input
    normalization (train with ``normalize=False`` to match). Adaptation: below 16x16 (8x8 digits) both convs are
    padded by 2 so the map stays at least 1x1 (8x8 -> 50x2x2); otherwise none.
    """
    arch_options("lenet-jeong", kwargs)
    pad = 0 if input_size >= 16 else 2
    side = ((input_size + 2 * pad - 4) // 2 + 2 * pad - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, kernel_size=5, padding=pad),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, kernel_size=5, padding=pad),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * side * side, 500),
        nn.ReLU(inplace=True),
        nn.Linear(500, num_classes),
    )
