"""Gradient masking is caught: a saturated-softmax model fools PGD, not the standard suite, and is flagged.

A fast version of ``benchmarks/masking.py`` on the bundled 8x8 digits. LeNet-5 is trained on the
cross-entropy of its logits divided by a temperature ``T = 100`` and deployed without it (the mechanism of
defensive distillation, Papernot et al. 2016, broken by Carlini & Wagner 2016): the deployed logits are about
``T`` times too large, the float32 softmax saturates and the cross-entropy gradient is exactly zero at most
inputs. PGD on the cross-entropy (and FGSM, APGD-CE) cannot move them; APGD-T (targeted DLR, scale-invariant),
FAB-T and Square (margins of logits) can.

Measured on a loaded 2-core machine (load average ~6.5-7), 1 thread, 100 test points at linf eps 0.2: training
10-15 s per model, the standard suite 1.6-3 s (APGD-T breaks every point, so FAB-T and Square have nothing left);
clean accuracy 0.95, PGD-40 robust accuracy 0.91 / 0.90 (seed 0 / 1), standard suite 0.00 / 0.00, with the
``zero-gradients`` flag. At eps 0.1 the suite ends at 0.26 but FAB-T and Square then run on the survivors
(~50 s), too slow here. The control, the same model trained at T = 1, raises no ``zero-gradients`` flag and
PGD-40 breaks it. (Plain FGSM training without random start, the other classic masking recipe, over-fits to
FGSM instead and PGD still breaks it: see ``benchmarks/masking.py``.)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.models import build_model
from robustbench_cnn.training import StepContext, TrainConfig, accuracy, fit

pytestmark = pytest.mark.data

TEMPERATURE = 100.0
EPS = 0.2
N = 100
MASKING_FLAGS = {"zero-gradients", "black-box-beats-white-box", "single-step-beats-iterative"}


class TemperatureRecipe:
    """Cross-entropy of ``logits / T`` (a Recipe for ``training.fit``); the model is deployed without ``T``."""

    name = "temperature"
    last_logits: torch.Tensor | None = None

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def params(self) -> dict[str, float]:
        return {"temperature": self.temperature}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        logits = model(x)
        self.last_logits = logits.detach()
        return F.cross_entropy(logits / self.temperature, y)


def train_digits_lenet5(temperature: float, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before function ones; more threads are slower when loaded
    try:
        train, test = load_split("digits", "train"), load_split("digits", "test", n=N)
        info = train.info
        torch.manual_seed(seed)
        model = build_model(
            "lenet5",
            in_channels=info.channels,
            num_classes=info.num_classes,
            input_size=info.size,
            mean=info.mean,
            std=info.std,
        )
        config = TrainConfig(epochs=15, batch_size=32, optimizer="adam", lr=0.01, device="cpu", seed=seed)
        fit(model, train.x, train.y, config, recipe=TemperatureRecipe(temperature), progress=False)
    finally:
        torch.set_num_threads(old)
    return model.eval(), test.x, test.y


@pytest.fixture(scope="module")
def masked():
    return train_digits_lenet5(TEMPERATURE)


def test_masked_model_fools_pgd_but_not_the_standard_suite_and_is_flagged(masked) -> None:
    model, x, y = masked
    assert accuracy(model, x, y) >= 0.9
    pgd = get_attack("pgd", steps=40)(model, x, y, ThreatModel.parse(f"linf:{EPS}"), seed=0).robust_accuracy
    assert pgd >= 0.8, f"the model is not masked (PGD-40 robust accuracy {pgd:.3f})"

    quick = evaluate(model, x, y, "linf", [EPS], "quick", seed=0)
    assert MASKING_FLAGS & {f.code for f in quick.flags}, "the quick suite is fooled and must say so"

    standard = evaluate(model, x, y, "linf", [EPS], "standard", seed=0)
    codes = {f.code for f in standard.flags}
    assert MASKING_FLAGS & codes, f"no masking flag raised: {sorted(codes)}"
    robust = standard.robust_accuracy(EPS)
    assert robust <= pgd - 0.4, f"standard suite {robust:.3f} is not far below PGD-40 alone {pgd:.3f}"


def test_control_without_temperature_is_not_flagged_and_pgd_breaks_it() -> None:
    model, x, y = train_digits_lenet5(1.0)
    assert accuracy(model, x, y) >= 0.9
    quick = evaluate(model, x, y, "linf", [EPS], "quick", seed=0)
    assert "zero-gradients" not in {f.code for f in quick.flags}
    assert quick.robust_accuracy(EPS) <= 0.1
