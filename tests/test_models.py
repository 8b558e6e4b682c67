"""Contract tests for the CNN registry: every architecture builds, runs and trains on tiny inputs."""

from __future__ import annotations

import inspect
import re
import typing

import pytest
import torch
from torch import nn

from robustbench_cnn.models import MODELS, NormalizedModel, build_model, head_module

EXPECTED_NAMES = {
    "lenet5",
    "smallcnn",
    "fastcnn",
    "alexnet",
    "vgg11_bn",
    "vgg16_bn",
    "googlenet",
    "resnet18",
    "preact_resnet18",
    "wide_resnet",
    "densenet121",
    "mobilenet_v2",
    "ensemble",
    "mlp",
    "lenet-jeong",
}
TORCHVISION_NAMES = ["alexnet", "vgg11_bn", "vgg16_bn", "googlenet", "resnet18", "densenet121", "mobilenet_v2"]
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
# WRN-28-10 is 36M parameters: the contract tests use WRN-16-4; the default is checked separately.
FAST_KWARGS: dict[str, dict[str, int]] = {"wide_resnet": {"depth": 16, "widen_factor": 4}}
# Parameter counts at 3x32x32 with 10 classes (wide_resnet: WRN-16-4); any change to an architecture shows here.
PARAMS_3X32 = {
    "ensemble": 3 * 214_918,  # three fastcnn members (the default)
    "lenet5": 83_126,
    "smallcnn": 4_259_274,
    "fastcnn": 214_918,
    "alexnet": 23_468_874,
    "vgg11_bn": 9_756_426,
    "vgg16_bn": 15_253_578,
    "googlenet": 5_602_474,
    "resnet18": 11_173_962,
    "preact_resnet18": 11_172_170,
    "wide_resnet": 2_748_890,
    "densenet121": 6_956_426,
    "mobilenet_v2": 2_236_682,
    "mlp": 656_810,
    "lenet-jeong": 657_080,
}


def _build(name: str, shape: tuple[int, int, int], num_classes: int = 10, **kwargs) -> NormalizedModel:
    torch.manual_seed(0)
    c, h, _ = shape
    return build_model(
        name, in_channels=c, num_classes=num_classes, input_size=h, **{**FAST_KWARGS.get(name, {}), **kwargs}
    )


def _batch(shape: tuple[int, int, int], n: int = 4, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, *shape, generator=g), torch.randint(0, num_classes, (n,), generator=g)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_exactly_the_expected_architectures():
    assert set(MODELS.list()) == EXPECTED_NAMES
    assert len(MODELS) == 15  # the thirteen CNNs, Papernot's MLP substitute and the logit-averaging ensemble


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_factory_signature_and_docstring(name):
    factory = MODELS.get(name)
    params = list(inspect.signature(factory).parameters.values())
    assert [p.name for p in params] == ["in_channels", "num_classes", "input_size", "kwargs"]
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD
    hints = typing.get_type_hints(factory)
    assert hints["in_channels"] is hints["num_classes"] is hints["input_size"] is int
    assert hints["return"] is nn.Module
    assert re.search(r"\b(19|20)\d\d\b", factory.__doc__ or ""), "docstring must cite the paper (with its year)"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_forward_and_one_sgd_step(name, shape):
    model = _build(name, shape)
    x, y = _batch(shape)
    if shape == (3, 32, 32):
        assert _n_params(model) == PARAMS_3X32[name]

    model.eval()
    with torch.no_grad():
        before = model(x)
    assert before.shape == (4, 10)
    assert torch.isfinite(before).all()

    model.train()
    # an ensemble's heads are its members' (the last member's stands for them: every parameter is checked below)
    head = head_module(model)[2] if name != "ensemble" else model.net.members[-1][-1]
    stem = next(p for p in model.parameters() if p.dim() >= 2)  # the first conv's (or the MLP's first) weight
    stem0, head0 = stem.detach().clone(), head.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    logits = model(x)
    # (Train mode: a fresh GoogLeNet's eval-mode logits are input-independent, its init is tiny and BN has no stats.)
    assert not torch.equal(logits[0], logits[1]), "logits do not depend on the input"
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} receives no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    opt.step()
    assert not torch.equal(stem, stem0), "the stem did not learn: gradients do not reach the input layer"
    assert not torch.equal(head.weight, head0)

    model.eval()
    with torch.no_grad():
        after = model(x)
    assert torch.isfinite(after).all()
    assert not torch.equal(after, before)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_head_is_the_final_linear_with_num_classes_outputs(name):
    model = _build(name, (1, 8, 8), num_classes=7).eval()
    if name == "ensemble":  # one head per member: no single head to find or replace
        with pytest.raises(ValueError, match="one classifier head per member"):
            head_module(model)
        return
    parent, attr, head = head_module(model)
    assert isinstance(head, nn.Linear) and getattr(parent, attr) is head
    assert head.out_features == 7
    # Nothing comes after the head: with zero weights the logits are exactly its bias, whatever the input.
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.arange(7, dtype=torch.float32))
        out = model(_batch((1, 8, 8), n=3)[0])
    torch.testing.assert_close(out, torch.arange(7, dtype=torch.float32).expand(3, 7))


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_same_seed_same_weights(name):
    a, b = _build(name, (1, 8, 8)).state_dict(), _build(name, (1, 8, 8)).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_unknown_option_is_an_error(name):
    with pytest.raises(TypeError, match="unexpected"):
        _build(name, (1, 8, 8), no_such_option=3)


def _linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def _conv_specs(model: nn.Module) -> list[tuple]:
    return [(tuple(m.weight.shape), m.stride, m.padding) for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_smallcnn_matches_madry_et_al_mnist_model():
    model = _build("smallcnn", (1, 28, 28))
    assert _conv_specs(model) == [((32, 1, 5, 5), (1, 1), (2, 2)), ((64, 32, 5, 5), (1, 1), (2, 2))]
    assert _linear_shapes(model) == [(7 * 7 * 64, 1024), (1024, 10)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert _n_params(model) == 3_274_634


def test_fastcnn_matches_wong_et_al_mnist_model():
    model = _build("fastcnn", (1, 28, 28))
    assert _conv_specs(model) == [((16, 1, 4, 4), (2, 2), (1, 1)), ((32, 16, 4, 4), (2, 2), (1, 1))]
    assert _linear_shapes(model) == [(32 * 7 * 7, 100), (100, 10)]
    assert _n_params(model) == 166_406


def test_lenet5_is_the_classic_network_on_28x28_and_pads_on_8x8():
    assert _linear_shapes(_build("lenet5", (1, 28, 28))) == [(16 * 5 * 5, 120), (120, 84), (84, 10)]
    assert _n_params(_build("lenet5", (1, 28, 28))) == 61_706
    assert _linear_shapes(_build("lenet5", (1, 8, 8)))[0] == (16 * 2 * 2, 120)


def test_lenet5_classic_uses_tanh_and_average_pooling_with_the_same_weights_shape():
    from robustbench_cnn.core.errors import ArchOptionError

    classic = build_model("lenet5", in_channels=1, num_classes=10, input_size=28, classic=True)
    kinds = {type(m) for m in classic.modules()}
    assert nn.Tanh in kinds and nn.AvgPool2d in kinds and nn.ReLU not in kinds and nn.MaxPool2d not in kinds
    assert _n_params(classic) == 61_706
    modern = build_model("lenet5", in_channels=1, num_classes=10, input_size=28)
    assert nn.ReLU in {type(m) for m in modern.modules()}
    classic.load_state_dict(modern.state_dict())  # same parameters: only the non-linearities differ
    with pytest.raises(ArchOptionError, match="classic='maybe'"):
        build_model("lenet5", in_channels=1, num_classes=10, input_size=28, classic="maybe")


def test_wide_resnet_28_10_default():
    torch.manual_seed(0)
    model = build_model("wide_resnet", in_channels=3, num_classes=10, input_size=32)
    assert _n_params(model) == 36_479_194  # the published ~36.5M
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 3 * 4 * 2  # stem + 3 groups x (28 - 4) / 6 blocks x 2 convs
    assert _linear_shapes(model) == [(640, 10)]


def test_wide_resnet_rejects_a_depth_that_is_not_6n_plus_4():
    with pytest.raises(ValueError, match=r"6n\+4"):
        build_model("wide_resnet", in_channels=3, num_classes=10, input_size=32, depth=20)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_vgg_drops_only_the_pools_that_would_empty_the_map(shape):
    expected_pools = {8: 3, 28: 4, 32: 5}[shape[1]]
    for name in ("vgg11_bn", "vgg16_bn"):
        model = _build(name, shape)
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == expected_pools
        assert _linear_shapes(model) == [(512, 512), (512, 512), (512, 10)]


def test_small_inputs_get_a_cifar_stem_and_large_inputs_keep_torchvision_stem():
    small, large = _build("resnet18", (1, 32, 32)).net, _build("resnet18", (1, 64, 64)).net
    assert (small.conv1.kernel_size, small.conv1.stride, small.conv1.in_channels) == ((3, 3), (1, 1), 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert (large.conv1.kernel_size, large.conv1.stride, large.conv1.in_channels) == ((7, 7), (2, 2), 1)
    assert isinstance(large.maxpool, nn.MaxPool2d)
    googlenet = _build("googlenet", (3, 32, 32)).net
    assert googlenet.conv1.conv.kernel_size == (3, 3) and googlenet.conv1.conv.stride == (1, 1)
    assert isinstance(googlenet.maxpool1, nn.Identity) and isinstance(googlenet.maxpool2, nn.Identity)
    assert googlenet.aux1 is None and googlenet.aux2 is None


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_nets_on_64x64_single_channel(name):
    model = _build(name, (1, 64, 64)).eval()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1
    with torch.no_grad():
        out = model(_batch((1, 64, 64), n=2)[0])
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_normalized_model_normalizes_inside():
    mean, std = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]
    model = _build("lenet5", (3, 32, 32), mean=mean, std=std).eval()
    x, _ = _batch((3, 32, 32))
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - m) / s))
        assert not torch.allclose(model(x), model.net(x))
    state = model.state_dict()
    torch.testing.assert_close(state["mean"], m)
    torch.testing.assert_close(state["std"], s)
    assert model.in_channels == 3


def test_build_model_rejects_mean_of_the_wrong_length():
    with pytest.raises(ValueError, match="mean has 1 values but the model has 3 input channels"):
        build_model("lenet5", in_channels=3, num_classes=10, input_size=32, mean=[0.5], std=[0.5])


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(KeyError, match="resnet18"):
        MODELS.get("resnet81")


def test_mlp_is_papernots_substitute_a():
    model = _build("mlp", (1, 28, 28))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 200), (200, 200), (200, 10)]
    assert sum(p.numel() for p in model.parameters()) == 199_210
    assert _build("mlp", (1, 8, 8), hidden=(32,))(torch.rand(2, 1, 8, 8)).shape == (2, 10)
