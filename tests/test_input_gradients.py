"""The first-layer input-gradient kernels (core/input_gradients.py) against autograd.

The fast kernels must give autograd's input gradient up to float rounding, leave every forward output bit for bit
unchanged, restore the model, and stay out of the way where they do not apply (trainable weights, grouped or
dilated convolutions, other channel counts).
"""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import held_out, trained_model
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.input_gradients import conv2d_input_grad, fast_input_gradients, input_gradient_kernel
from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.models import MODELS, build_model


def _input_grad(model: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad((logits * weights).sum(), [x])
    return logits.detach(), grad


def _close(fast: torch.Tensor, ref: torch.Tensor) -> float:
    return float((fast - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


# (in, out, kernel, stride, padding, height, width): both kernels, odd strides, non-square inputs, padding > k-1
SHAPES = [
    (1, 6, 5, 1, 2, 28, 28),
    (1, 16, 4, 2, 1, 28, 28),
    (1, 32, 5, 1, 2, 28, 28),
    (1, 8, 3, 1, 0, 9, 13),
    (1, 4, 3, 1, 3, 7, 7),
    (1, 10, 3, 3, 1, 11, 10),
    (3, 64, 3, 1, 1, 16, 16),
    (2, 64, 7, 2, 3, 15, 17),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_kernel_matches_autograd(shape: tuple[int, ...]) -> None:
    cin, cout, k, s, p, h, w = shape
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p)
    conv.requires_grad_(False)
    x = torch.rand(5, cin, h, w, generator=gen)
    kernel = input_gradient_kernel(conv)
    assert kernel in ("flip", "fold")
    if p > k - 1:
        assert kernel == "fold"  # flip would need a negative padding
    weights = torch.randn(conv(x).shape, generator=gen)
    out_ref, ref = _input_grad(conv, x, weights)
    with fast_input_gradients(conv):
        out_fast, fast = _input_grad(conv, x, weights)
    assert torch.equal(out_fast, out_ref)  # the forward is the stock F.conv2d
    assert _close(fast, ref) < 1e-5
    direct = conv2d_input_grad(weights, conv.weight, (h, w), conv.stride, conv.padding, kernel)
    assert torch.equal(direct, fast)


@pytest.mark.parametrize("arch", MODELS.list())
def test_every_registered_model_keeps_its_input_gradient(arch: str) -> None:
    channels, size = (1, 28) if arch not in ("alexnet", "googlenet", "inception") else (3, 32)
    torch.manual_seed(0)
    try:
        model = build_model(arch, in_channels=channels, num_classes=10, input_size=size).eval()
    except ValueError:
        model = build_model(arch, in_channels=3, num_classes=10, input_size=32).eval()
        channels, size = 3, 32
    x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(2, 10, generator=torch.Generator().manual_seed(2))
    with eval_mode(model):
        out_ref, ref = _input_grad(model, x, weights)
        with fast_input_gradients(model):
            out_fast, fast = _input_grad(model, x, weights)
    assert torch.equal(out_fast, out_ref)
    assert _close(fast, ref) < 1e-4
    assert not any("_conv_forward" in m.__dict__ for m in model.modules())


def test_rule_leaves_other_layers_alone() -> None:
    assert input_gradient_kernel(nn.Conv2d(16, 32, 3)) is None  # a hidden layer: oneDNN's kernel is fine there
    assert input_gradient_kernel(nn.Conv2d(3, 16, 3)) is None  # measured no faster at 2 threads
    assert input_gradient_kernel(nn.Conv2d(1, 8, 3, groups=1, dilation=2)) is None
    assert input_gradient_kernel(nn.Conv2d(2, 64, 3, groups=2)) is None
    assert input_gradient_kernel(nn.Conv2d(1, 8, 3, padding="same")) is None
    assert input_gradient_kernel(nn.Conv2d(1, 8, 3, padding=1, padding_mode="reflect")) is None

    class Custom(nn.Conv2d):
        def _conv_forward(self, x, weight, bias):  # e.g. weight standardisation: not ours to replace
            return super()._conv_forward(x, weight * 2, bias)

    assert input_gradient_kernel(Custom(1, 8, 3)) is None
    assert input_gradient_kernel(nn.Conv2d(1, 6, 5, padding=2)) == "flip"
    assert input_gradient_kernel(nn.Conv2d(1, 32, 5, padding=2)) == "fold"
    assert input_gradient_kernel(nn.Conv2d(3, 64, 3, padding=1)) == "fold"


def test_flip_runs_in_nchw_and_channels_last_keeps_autograds_kernel() -> None:
    """LeNet-5's first layer takes ``flip`` in NCHW (training); in channels_last (attacks on the CPU) oneDNN's own
    input gradient is the same computation, so the layer keeps it: the custom backward is not in the graph."""
    conv = nn.Conv2d(1, 6, 5, padding=2).requires_grad_(False)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for layout, flips in ((torch.contiguous_format, True), (torch.channels_last, False)):
        conv = conv.to(memory_format=layout)
        xx = x.clone().requires_grad_(True)
        with fast_input_gradients(conv):
            out = conv(xx)
        assert ("Conv2dInputGrad" in type(out.grad_fn).__name__) == flips, layout
        _, ref = _input_grad(conv, x, torch.ones_like(out))
        (grad,) = torch.autograd.grad(out, xx, torch.ones_like(out))
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-5)


def test_trainable_weights_keep_the_stock_convolution() -> None:
    conv = nn.Conv2d(1, 6, 5, padding=2)
    x = torch.rand(3, 1, 12, 12)
    with fast_input_gradients(conv):
        conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_modules_are_restored_on_error() -> None:
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU())
    with pytest.raises(RuntimeError, match="boom"):
        with fast_input_gradients(model):
            assert "_conv_forward" in model[0].__dict__
            raise RuntimeError("boom")
    assert "_conv_forward" not in model[0].__dict__


def test_pgd_with_fast_kernels_matches_pgd_without() -> None:
    """On the digits TinyNet (first layer 1 -> 16, the fold kernel) a seeded PGD gives the same robust accuracy
    with and without the fast kernels, and FGSM's signed gradient differs at most where the gradient is ~0."""
    model = trained_model()
    x, y = held_out(128)
    threat = ThreatModel.parse("linf:0.15")

    slow_attack = get_attack("pgd", steps=10)
    slow_attack.fast_gradient_kernels = False
    fast = get_attack("pgd", steps=10)(model, x, y, threat, seed=4)
    slow = slow_attack(model, x, y, threat, seed=4)
    assert fast.robust_accuracy == pytest.approx(slow.robust_accuracy, abs=1.5 / len(y))
    assert fast.robust_accuracy < fast.clean_accuracy  # the attack still attacks


def test_unbatched_and_empty_inputs_keep_the_stock_path() -> None:
    """nn.Conv2d takes unbatched C x H x W input, and an empty batch; the fold kernel reads N from grad_out's first
    dimension, so both must stay on the stock convolution (an unbatched input once got a wrong gradient)."""
    conv = nn.Conv2d(1, 16, 3, padding=(0, 1)).requires_grad_(False)
    for x in (torch.rand(1, 3, 5), torch.rand(0, 1, 6, 6)):
        weights = torch.randn(conv(x).shape)
        _, ref = _input_grad(conv, x, weights)
        with fast_input_gradients(conv):
            _, fast = _input_grad(conv, x, weights)
        assert torch.equal(fast, ref)


def test_torch_func_and_forward_mode_work_inside_the_block() -> None:
    import torch.autograd.forward_ad as fwad

    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).requires_grad_(False)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    tangent = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))

    def func_grad() -> torch.Tensor:
        return torch.func.grad(lambda z: model(z).square().sum())(x)

    def forward_mode() -> torch.Tensor:
        with fwad.dual_level():
            return fwad.unpack_dual(model(fwad.make_dual(x, tangent))).tangent

    ref_grad, ref_tangent = func_grad(), forward_mode()
    with fast_input_gradients(model):
        assert _close(func_grad(), ref_grad) < 1e-5
        assert _close(forward_mode(), ref_tangent) < 1e-6


def test_constant_parameters_take_the_fast_kernel_with_trainable_weights() -> None:
    """A training recipe's perturbation: the weights require gradients (for the training step after it), the block
    reads them as constants, so the fast kernel runs and gives autograd's input gradient; after the block the layer
    trains as before."""
    conv = nn.Conv2d(1, 16, 4, stride=2, padding=1)  # fastcnn's first layer: the fold kernel
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(conv(x).shape, generator=torch.Generator().manual_seed(1))
    out_ref, ref = _input_grad(conv, x, weights)
    with fast_input_gradients(conv, constant_parameters=True):
        assert type(conv(x.clone().requires_grad_(True)).grad_fn).__name__ == "_Conv2dInputGradBackward"
        out_fast, fast = _input_grad(conv, x, weights)
    assert torch.equal(out_fast, out_ref)
    assert _close(fast, ref) < 1e-5
    assert conv.weight.grad is None  # the perturbation touched no parameter gradient
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_training_perturbation_matches_autograd_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """``perturb`` (every training recipe's inner maximisation) on fastcnn in train mode, trainable weights: the
    same PGD-5 iterates with the fast first-layer kernel as with autograd's, up to the signs of gradient components
    that are ~0 (the kernels agree to ~1e-6 relative; on this batch no sign differs), and no parameter gradient."""
    import contextlib

    from robustbench_cnn.defenses import perturb as perturb_module

    torch.manual_seed(0)
    model = build_model("fastcnn", in_channels=1, num_classes=10, input_size=28).train()
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    threat = ThreatModel.parse("linf:0.3")

    def run() -> torch.Tensor:
        return perturb_module.perturb(
            model, x, threat, perturb_module.ce_objective(y), steps=5, alpha=0.1,
            generator=torch.Generator().manual_seed(4),
        )  # fmt: skip

    from robustbench_cnn.core import input_gradients

    calls = []

    def counted(*args, **kwargs):
        calls.append(args[-1])
        return conv2d_input_grad(*args, **kwargs)

    monkeypatch.setattr(input_gradients, "conv2d_input_grad", counted)
    fast = run()
    assert calls == ["fold"] * 5  # one fast first-layer gradient per step
    monkeypatch.setattr(perturb_module, "fast_input_gradients", lambda *a, **k: contextlib.nullcontext())
    stock = run()
    assert len(calls) == 5
    assert float((fast != stock).float().mean()) < 1e-3
    assert all(p.grad is None for p in model.parameters())
