"""The CPU memory layout an architecture declares: used by every attack call and ``evaluate``, restored after, same
values.

Why: channels_last runs most registered CNNs faster on the CPU (``docs/cpu_layout.md``); the switch must not leak
(a model comes back NCHW, safetensors can save it) nor change what the network computes beyond float rounding.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.model_utils import cpu_layout
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.models import MODELS, build_model, declared_cpu_layout, register_model
from robustbench_cnn.training import TrainConfig, fit


def _layouts_seen(model: nn.Module) -> list[bool]:
    """Record, at every forward, whether a conv weight is in channels_last (one with several input channels: with
    one, both layouts have the same strides)."""
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.in_channels)
    seen: list[bool] = []
    conv.register_forward_pre_hook(
        lambda mod, _: seen.append(mod.weight.is_contiguous(memory_format=torch.channels_last))
    )
    return seen


def _nchw(model: nn.Module) -> bool:
    return all(p.is_contiguous() for p in model.parameters() if p.dim() == 4)


def test_every_architecture_declares_a_known_layout_and_build_model_carries_it():
    for arch in MODELS:
        assert declared_cpu_layout(arch) in ("contiguous", "channels_last")
    assert declared_cpu_layout("smallcnn") == "channels_last"  # faster there (docs/cpu_layout.md)
    assert declared_cpu_layout("fastcnn") == "contiguous"  # not faster there
    assert build_model("smallcnn", in_channels=1, num_classes=10, input_size=8).cpu_layout == "channels_last"


def test_register_model_rejects_an_unknown_layout():
    with pytest.raises(ValueError, match="cpu_layout"):
        register_model("no-such-net", gradcam_layer=None, cpu_layout="nhwc")


def test_evaluate_runs_a_channels_last_architecture_in_it_and_gives_it_back_nchw():
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=10, input_size=8).eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():
        before = model(x)
    seen = _layouts_seen(model)
    ev = evaluate(model, x, y, "linf", [0.1], "pgd", seed=0)
    assert seen and all(seen), "evaluate did not run the declared channels_last layout"
    assert _nchw(model)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # the weights came back unchanged
    seen.clear()
    with torch.no_grad(), cpu_layout(model, "cpu"):
        # same values in the other layout, up to float rounding (7e-8 on these logits; 1e-5 leaves 100x room)
        assert torch.allclose(model(x), before, atol=1e-5)
    assert 0.0 <= ev.robust_accuracy(0.1) <= 1.0


def test_an_attack_called_directly_runs_in_the_declared_layout_too():
    """The switch sits in ``Attack.__call__``, the one entry of every attack run (transfer crafting, curves)."""
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=10, input_size=8).eval()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    seen = _layouts_seen(model)
    get_attack("pgd", steps=2)(model, x, y, ThreatModel.parse("linf:0.1"))
    assert seen and all(seen)
    assert _nchw(model)


def test_fit_keeps_training_in_nchw():
    """Training stays NCHW: the layouts round differently in the last bits and training amplifies that into other
    weights (the CI plan's lenet5 moved by 10.5 pp when it trained in channels_last), so a seed trains what it did."""
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=10, input_size=8)
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    seen = _layouts_seen(model)
    fit(model, x, y, TrainConfig(epochs=1, batch_size=32, device="cpu"), progress=False)
    assert seen and not any(seen)


def test_a_contiguous_architecture_or_another_device_is_left_alone_and_so_is_a_callers_channels_last():
    fast = build_model("fastcnn", in_channels=1, num_classes=10, input_size=8)
    with cpu_layout(fast, "cpu"):
        assert _nchw(fast)
    small = build_model("smallcnn", in_channels=1, num_classes=10, input_size=8)
    with cpu_layout(small, "meta"):  # not the CPU: TrainConfig.channels_last decides there
        assert _nchw(small)
    small.to(memory_format=torch.channels_last)  # the caller's choice survives the context
    with cpu_layout(small, "cpu"):
        pass
    assert not _nchw(small)
