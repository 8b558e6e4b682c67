"""Native attacks cross-checked against the libraries, and the robustness curve.

All on the tiny digits net (1 x 8 x 8, ~97% clean accuracy) and held-out points, seeded.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from attack_fixtures import held_out, trained_model

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.targets import choose_targets
from robustbench_cnn.core.types import Norm, ThreatModel

LINF_MID = ThreatModel(Norm.LINF, 0.1)  # robust accuracy about 50% for PGD-20 on this net


def robust_flags(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


@pytest.mark.parametrize(
    "threat, step, early_stop",
    [
        (LINF_MID, {"abs_stepsize": 0.01}, True),
        (LINF_MID, {"abs_stepsize": 0.01}, False),
        (ThreatModel(Norm.L2, 0.5), {"rel_stepsize": 0.1}, True),
    ],
    ids=["linf-early-stop", "linf-final-iterate", "l2-early-stop"],
)
def test_native_pgd_matches_foolbox_pgd(threat: ThreatModel, step: dict, early_stop: bool) -> None:
    import foolbox as fb

    model = trained_model()
    x, y = held_out(200)
    settings = dict(steps=20, random_start=False, **step)
    native = get_attack("pgd", early_stop=early_stop, **settings)(model, x, y, threat)

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
    fb_attack = fb.attacks.LinfPGD if threat.norm is Norm.LINF else fb.attacks.L2PGD
    _, clipped, _ = fb_attack(**settings)(fmodel, x, y, epsilons=threat.eps)
    fb_robust = robust_flags(model, clipped, y)
    fb_acc = float(fb_robust.float().mean())

    assert 0.3 < native.robust_accuracy < 0.7, "eps must give a mid-range robust accuracy"
    assert abs(native.robust_accuracy - fb_acc) <= 0.005, (native.robust_accuracy, fb_acc)
    assert (native.robust == fb_robust).float().mean() >= 0.99


def test_random_start_pgd_is_close_to_foolbox() -> None:
    import foolbox as fb

    model = trained_model()
    x, y = held_out(200)
    native = get_attack("pgd", steps=20, abs_stepsize=0.01, early_stop=False)(model, x, y, LINF_MID, seed=0)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
    torch.manual_seed(0)
    _, clipped, _ = fb.attacks.LinfPGD(steps=20, abs_stepsize=0.01)(fmodel, x, y, epsilons=LINF_MID.eps)
    assert abs(native.robust_accuracy - float(robust_flags(model, clipped, y).float().mean())) <= 0.03


def test_apgd_ce_adapter_equals_direct_call() -> None:
    from pyautoattack.autopgd_base import APGDAttack

    model = trained_model()
    x, y = held_out(200)
    res = get_attack("apgd-ce", n_iter=20)(model, x, y, LINF_MID, seed=7)

    direct = APGDAttack(
        model, n_iter=20, norm="Linf", n_restarts=1, eps=LINF_MID.eps, seed=7, loss="ce", device=x.device
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adv = direct.perturb(x, y)
    direct_robust = robust_flags(model, adv, y)
    assert res.robust_accuracy == float(direct_robust.float().mean())
    assert torch.equal(res.robust, direct_robust)


def test_autoattack_adapter_equals_direct_call() -> None:
    """The cascade machinery (seed, subset, order) matches AutoAttack's own run exactly.

    version="custom" with APGD-CE + APGD-T keeps this fast; "standard" goes through the same code
    path and only adds FAB-T and Square (minutes on a busy CPU).
    """
    from pyautoattack import AutoAttack

    model = trained_model()
    x, y = held_out(60)
    subs = ["apgd-ce", "apgd-t"]
    res = get_attack("autoattack", version="custom", attacks=subs)(model, x, y, LINF_MID, seed=5)

    aa = AutoAttack(model, norm="Linf", eps=LINF_MID.eps, seed=5, version="custom", attacks=subs, device=x.device)
    aa.verbose = False
    adv, _ = aa.run_standard_evaluation(x, y)
    direct_robust = robust_flags(model, adv, y)
    assert 0.2 < res.robust_accuracy < 0.8
    assert res.robust_accuracy == float(direct_robust.float().mean())
    assert torch.equal(res.robust, direct_robust)
    assert torch.allclose(res.x_adv, adv)


def test_targeted_pgd_reaches_random_targets_at_large_eps() -> None:
    model = trained_model()
    x, y = held_out(100)
    with torch.no_grad():
        logits = model(x)
    targets = choose_targets("random", logits, y, 10, torch.Generator().manual_seed(0))
    res = get_attack("pgd", steps=40)(model, x, y, ThreatModel(Norm.LINF, 0.3), targets=targets, seed=0)
    assert res.targeted
    assert res.success_rate >= 0.9, res.success_rate
    assert (res.pred_adv[res.success] == targets[res.success]).all()


def test_robustness_curve_grows_the_ball() -> None:
    model = trained_model()
    x, y = held_out(120)
    eps_list = [0.1, 0.0, 0.2, 0.05]
    pgd = get_attack("pgd", steps=10, rel_stepsize=0.25, random_start=False)
    curve = pgd.robustness_curve(model, x, y, "linf", eps_list, seed=0)

    assert [r.threat.eps for r in curve] == sorted(eps_list)
    accs = [r.robust_accuracy for r in curve]
    assert accs[0] == curve[0].clean_accuracy
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[0] > accs[1] > accs[2] > accs[3]
    for smaller, larger in zip(curve, curve[1:]):
        assert not (larger.robust & ~smaller.robust).any()  # robust at eps_k => robust below
        broken = smaller.success
        assert torch.equal(larger.x_adv[broken], smaller.x_adv[broken])
    for r in curve:  # every x_adv is inside its own ball
        assert (r.perturbation_norm <= r.threat.eps + 1e-6).all()
        assert (r.perturbation_norm[r.success] <= r.threat.eps + 1e-6).all()

    # equals separate runs in the "broken at a smaller eps" sense
    robust_so_far = torch.ones_like(y, dtype=torch.bool)
    for r in curve:
        separate = pgd(model, x, y, r.threat, seed=0)
        robust_so_far &= separate.robust
        assert (r.robust != robust_so_far).sum() <= 1


def test_robustness_curve_targeted_and_errors() -> None:
    model = trained_model()
    x, y = held_out(30)
    targets = (y + 1) % 10
    curve = get_attack("fgsm").robustness_curve(model, x, y, Norm.LINF, [0.05, 0.3], targets=targets)
    assert curve[1].success.sum() >= curve[0].success.sum()
    assert (curve[1].pred_adv[curve[1].success] == targets[curve[1].success]).all()
    with pytest.raises(ValueError, match="eps_list is empty"):
        get_attack("fgsm").robustness_curve(model, x, y, "linf", [])
    with pytest.raises(ValueError, match="invalid norm 'l3'"):
        get_attack("fgsm").robustness_curve(model, x, y, "l3", [0.1])
