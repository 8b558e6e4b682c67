"""Batch norm folded into the convolution before it (core/batchnorm_folding.py) for the attacks' own passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.pgd import PGD
from robustbench_cnn.core.batchnorm_folding import batchnorm_layers, folded_batchnorm
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.models import build_model


def bn_net(seed: int = 0) -> nn.Module:
    """A small conv -> BN -> ReLU CNN with non-trivial running statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(xg), y), [xg])
    return grad


def test_folding_removes_the_batch_norms_and_keeps_the_function():
    net = bn_net().double()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = folded_batchnorm(net)
    assert folded is not net
    assert batchnorm_layers(net) == 2 and batchnorm_layers(folded) == 0
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    with torch.no_grad():
        # float64: any difference beyond rounding (~1e-15) would be a wrong fold
        assert torch.allclose(folded(x), net(x), rtol=0, atol=1e-12)
    g_net, g_folded = input_gradient(net, x, y), input_gradient(folded, x, y)
    assert torch.allclose(g_folded, g_net, rtol=0, atol=1e-12 * float(g_net.abs().max()))
    after = net.state_dict()  # the given model is not changed
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_folding_keeps_the_model_where_it_cannot_fold():
    lenet = build_model("lenet5", in_channels=1, num_classes=10, input_size=8).eval()
    assert folded_batchnorm(lenet) is lenet  # no batch norm
    train = bn_net().train()
    assert folded_batchnorm(train) is train  # train mode: the batch statistics are not an affine map

    class DataDependent(nn.Module):  # torch.fx cannot trace a branch on the data
        def __init__(self) -> None:
            super().__init__()
            self.net = bn_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) if float(x.sum()) > 0 else -self.net(x)

    hooked = bn_net()
    hooked[2].register_forward_hook(lambda module, inputs, output: output * 2.0)
    assert folded_batchnorm(hooked) is hooked  # a traced copy may drop what a hook does

    untraceable = DataDependent().eval()
    assert folded_batchnorm(untraceable) is untraceable

    class BnFirst(nn.Module):  # batch norm before the convolution (pre-activation): nothing to fold into
        def __init__(self) -> None:
            super().__init__()
            self.bn, self.conv, self.head = nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3), nn.LazyLinear(10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(self.bn(x)).flatten(1))

    class Shared(nn.Module):  # one convolution called twice, once before a batch norm: folding would change both
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.head = nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1), nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.bn(self.conv(x)), self.conv(x)], 1).flatten(1))

    shared = Shared().eval()
    shared.bn.running_mean.fill_(0.3)
    assert folded_batchnorm(shared) is shared

    pre = BnFirst()
    pre(torch.rand(2, 1, 8, 8))
    pre.eval()
    assert folded_batchnorm(pre) is pre


class RecordingPGD(PGD):
    """PGD that records the module its perturb receives (not registered)."""

    seen: list[nn.Module] = []

    def perturb(self, model, x, y, threat, targets, generator, start=None):  # type: ignore[override]
        RecordingPGD.seen.append(model)
        return super().perturb(model, x, y, threat, targets, generator, start)


def test_native_attacks_step_on_the_folded_copy_and_judge_on_the_model():
    net = bn_net(1)
    x = torch.rand(64, 1, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)  # every point clean-correct
    threat = ThreatModel.parse("linf:0.1")
    RecordingPGD.seen = []
    result = RecordingPGD(steps=10)(net, x, y, threat, seed=0)
    assert len(RecordingPGD.seen) == 1 and RecordingPGD.seen[0] is not net
    assert batchnorm_layers(RecordingPGD.seen[0]) == 0
    with torch.no_grad():  # the verdict is the given model's own prediction on each adversarial example
        assert torch.equal(result.pred_adv, net(result.x_adv).argmax(1))
    assert batchnorm_layers(net) == 2 and not any(p.requires_grad is False for p in net.parameters())

    unfolded = RecordingPGD(steps=10)
    unfolded.fast_gradient_kernels = False  # this instance only: the model as given, autograd's kernels
    RecordingPGD.seen = []
    reference = unfolded(net, x, y, threat, seed=0)
    assert RecordingPGD.seen == [net]
    # the same attack up to float rounding in the steps: the sign of a gradient component within rounding of 0 may
    # differ, so allow a point or two of 64 (measured: equal)
    assert abs(int(result.success.sum()) - int(reference.success.sum())) <= 2


@pytest.mark.parametrize("name", ["fgsm", "apgd", "apgd-mt"])
def test_other_native_gradient_attacks_fold_and_stay_in_the_ball(name: str):
    net = bn_net(2)
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)
    threat = ThreatModel.parse("linf:0.1")
    attack = get_attack(name)
    assert attack.fast_gradient_kernels
    result = attack(net, x, y, threat, seed=0)
    assert float((result.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    with torch.no_grad():
        assert torch.equal(result.pred_adv, net(result.x_adv).argmax(1))


def test_the_copy_is_made_only_when_there_is_something_to_attack(monkeypatch: pytest.MonkeyPatch):
    """Folding costs 57-291 ms on a ResNet-18; a call with nothing to attack (eps 0, or no clean-correct point, as
    late along a curve) must not pay it."""
    import robustbench_cnn.attacks.base as base

    made: list[nn.Module] = []
    monkeypatch.setattr(base, "folded_batchnorm", lambda m: made.append(m) or folded_batchnorm(m))
    net = bn_net(3)
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)
    get_attack("pgd", steps=2)(net, x, y, ThreatModel.parse("linf:0"), seed=0)
    get_attack("pgd", steps=2)(net, x, (y + 1) % 10, ThreatModel.parse("linf:0.1"), seed=0)  # none clean-correct
    assert made == []
    get_attack("pgd", steps=2)(net, x, y, ThreatModel.parse("linf:0.1"), seed=0)
    assert made == [net]
