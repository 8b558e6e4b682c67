"""core.geometry: the one geometry of the attacks and the defenses' inner maximisation."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import held_out, trained_model

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.geometry import ascent_step, project, random_start
from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.defenses.perturb import ce_objective, perturb


def test_pgd_attack_and_training_perturbation_take_the_same_steps() -> None:
    # the same ascent steps and projections: PGD without early stopping and the defenses' perturb() with the
    # cross-entropy land on the same points, bit for bit (both from the clean point: their uniform draws agree only
    # up to the last bit on some CPU kernels, see the next tests)
    model = trained_model()
    x, y = held_out(40)
    with torch.no_grad():
        keep = model(x).argmax(1) == y  # the attack skips misclassified points; perturb() does not
    x, y = x[keep], y[keep]
    threat = ThreatModel(Norm.LINF, 0.1)
    pgd = get_attack("pgd", steps=5, abs_stepsize=0.02, early_stop=False, random_start=False)
    pgd.fast_gradient_kernels = False  # autograd's kernels, as perturb() uses
    attacked = pgd(model, x, y, threat, seed=7).x_adv
    with eval_mode(model):
        inner = perturb(
            model, x, threat, ce_objective(y), steps=5, alpha=0.02, generator=torch.Generator(), start="none"
        )
    assert torch.equal(attacked, project(inner, x, threat))  # the attack projects its output once more


@pytest.mark.parametrize("norm, eps", [(Norm.LINF, 0.1), (Norm.L2, 1.0), (Norm.L1, 4.0)])
def test_uniform_start_lies_in_the_ball_and_the_box(norm: Norm, eps: float) -> None:
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    threat = ThreatModel(norm, eps)
    start = random_start(x, threat, torch.Generator().manual_seed(1))
    assert start.min() >= 0 and start.max() <= 1
    assert (norm.measure(start - x) <= eps * (1 + 1e-5)).all()  # 1e-5: float32 rounding of the radius
    unclipped = random_start(x, threat, torch.Generator().manual_seed(1), clip=False)
    assert torch.equal(unclipped.clamp(0, 1), start)  # the same draw, before the box


def test_linf_draws_are_the_same_distribution_from_the_same_stream() -> None:
    # in_place=True (the defenses' uniform_(-eps, eps)) and the attacks' (2U - 1) * eps consume the same
    # generator stream and agree up to the last bit of eps * (2U - 1): 2^-24 relative
    x = torch.full((256, 1, 8, 8), 0.5)
    threat = ThreatModel(Norm.LINF, 0.1)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = random_start(x, threat, g1, clip=False)
    b = random_start(x, threat, g2, clip=False, in_place=True)
    assert torch.allclose(a, b, rtol=0, atol=0.1 * 2**-23)
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))


def test_other_starts_and_errors() -> None:
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    threat = ThreatModel(Norm.LINF, 0.1)
    assert torch.equal(random_start(x, threat, torch.Generator(), "none"), x)
    normal = random_start(x, threat, torch.Generator().manual_seed(0), "normal", sigma=0.01, clip=False)
    noise = normal - x
    assert 0.005 < float(noise.std()) < 0.02 and not torch.equal(normal, x)  # sigma 0.01, 512 draws
    with pytest.raises(ValueError, match="invalid start 'cauchy': use one of uniform, normal, none"):
        random_start(x, threat, torch.Generator(), "cauchy")
    with pytest.raises(ValueError, match="no random start defined for norm l0"):
        random_start(x, ThreatModel(Norm.L0, 3), torch.Generator())


@pytest.mark.parametrize("norm, eps", [(Norm.LINF, 0.1), (Norm.L2, 1.0)])
def test_ascent_step_is_a_projected_steepest_step(norm: Norm, eps: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=gen)
    grad = torch.randn(16, 1, 8, 8, generator=gen)
    threat = ThreatModel(norm, eps)
    step = ascent_step(x, grad.clone(), eps / 4, x, threat, threat.linf_box(x))
    assert (norm.measure(step - x) <= eps + 1e-6).all() and step.min() >= 0 and step.max() <= 1
    # it moves along the gradient: the first-order gain is positive for every point
    assert ((step - x).flatten(1) * grad.flatten(1)).sum(1).gt(0).all()
    if norm is Norm.LINF:  # the fused clamp to the box is the projection, up to float rounding
        reference = project(x + eps / 4 * grad.sign(), x, threat)
        assert torch.allclose(step, reference, atol=1e-7)
