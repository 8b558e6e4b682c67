"""The Attack contract, checked for every registered attack and every norm it supports.

Each (attack, norm) runs on a tiny trained digits net (1 x 8 x 8) put in *train* mode, with a few
labels flipped so that some points are misclassified. Hyper-parameters are cut down so the whole
module stays fast; the properties checked do not depend on them.
"""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import TinyNet, held_out, trained_model

from robustbench_cnn.attacks import ATTACKS, Attack, get_attack
from robustbench_cnn.core.errors import UnknownNameError
from robustbench_cnn.core.geometry import project
from robustbench_cnn.core.patch_threat import PatchThreat
from robustbench_cnn.core.types import Norm, ThreatModel

#: cheap settings for the expensive attacks (contract checks, not strength checks)
CHEAP: dict[str, dict] = {
    "pgd": {"steps": 5},
    "foolbox-pgd": {"steps": 5},
    "mi-fgsm": {"steps": 3},
    "di-fgsm": {"steps": 3},
    "di-mi-fgsm": {"steps": 3},
    "cw-l2": {"steps": 10, "binary_search_steps": 2},
    "deepfool": {"steps": 10},
    "boundary": {"steps": 20, "init_directions": 20, "init_steps": 10},
    "hopskipjump": {
        "steps": 2,
        "initial_gradient_eval_steps": 5,
        "max_gradient_eval_steps": 10,
        "init_directions": 20,
        "init_steps": 10,
    },
    "apgd-ce": {"n_iter": 5},
    "apgd-dlr": {"n_iter": 5},
    "apgd-t": {"n_iter": 5, "n_target_classes": 2},
    "fab-t": {"n_iter": 5, "n_target_classes": 2},
    "square": {"n_queries": 50},
    "autoattack": {"version": "custom", "attacks": ["apgd-ce"]},
    "patch": {"steps": 10, "batch": 16, "restarts": 2},
}
EPS = {Norm.LINF: 0.1, Norm.L2: 0.5, Norm.L1: 2.0, Norm.L0: 4.0}
#: the patch attacks' threat in the contract: 0.2 of an 8 x 8 digit is a 3 x 3 patch
PATCH = "patch"
PATCH_AREA = 0.2
N = 12
FLIPPED = 3  # the first points get a wrong label: the model misclassifies them


def threats_of(name: str) -> tuple[Norm | str, ...]:
    """The threat kinds an attack is checked in: its norms, or ``"patch"`` for a patch attack (declared)."""
    cls = ATTACKS.get(name)
    return (PATCH,) if cls.threat_kind == "patch" else cls.norms


def threat_for(kind: Norm | str, size: float | None = None) -> ThreatModel | PatchThreat:
    """The contract's threat of a kind: the norm ball of radius EPS, or the patch of area PATCH_AREA."""
    if kind == PATCH:
        return PatchThreat(PATCH_AREA if size is None else size)
    return ThreatModel(kind, EPS[kind] if size is None else size)  # type: ignore[arg-type]


CASES = [
    pytest.param(name, kind, id=f"{name}-{getattr(kind, 'value', kind)}")
    for name in ATTACKS.list()
    for kind in threats_of(name)
]
TARGETED = [pytest.param(name, id=name) for name in ATTACKS.list() if ATTACKS.get(name).supports_targeted]


def make(name: str) -> Attack:
    return get_attack(name, **CHEAP.get(name, {}))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = held_out(N)
    y[:FLIPPED] = (y[:FLIPPED] + 1) % 10
    return x, y


def train_mode_model() -> TinyNet:
    model = trained_model()
    model.train()
    return model


@pytest.mark.parametrize("name, norm", CASES)
def test_contract(name: str, norm: Norm | str) -> None:
    model = train_mode_model()
    x, y = batch()
    x0, y0 = x.clone(), y.clone()
    attack = make(name)
    threat = threat_for(norm)
    rng_before = torch.get_rng_state()

    res = attack(model, x, y, threat, seed=3)

    assert torch.equal(torch.get_rng_state(), rng_before), "the global RNG must be left alone"

    # inputs untouched, model state restored (mode of every module, parameter grads)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    # the threat model holds
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    if isinstance(threat, PatchThreat):  # a patch: pixels change only inside each point's mask, within budget
        side = threat.side(*x.shape[2:])
        assert res.mask is not None and res.mask.shape == (N, 1, *x.shape[2:]) and res.mask.dtype == torch.bool
        changed = (res.x_adv != x).any(dim=1, keepdim=True)
        assert not (changed & ~res.mask).any()
        assert (res.mask.flatten(1).sum(dim=1) <= side**2).all()
        assert res.mask[res.clean_correct].flatten(1).sum(dim=1).eq(side**2).all()  # the whole patch is placed
        assert not res.mask[~res.clean_correct].any()
        assert torch.allclose(res.perturbation_norm, PatchThreat.measure(res.x_adv - x))
        assert (res.perturbation_norm <= threat.covered(*x.shape[2:]) + 1e-6).all()
    else:
        delta = (res.x_adv - x).flatten(1)
        assert res.mask is None
        assert (norm.measure(delta) <= threat.eps + 1e-6).all()
        assert torch.allclose(res.perturbation_norm, norm.measure(delta))
    # results are computed in eval mode, and consistent
    with torch.no_grad():
        model.eval()
        clean_pred = model(x).argmax(1)
        adv_pred = model(res.x_adv).argmax(1)
        model.train()
    assert torch.equal(res.clean_correct, clean_pred == y)
    assert torch.equal(res.pred_adv, adv_pred)
    assert not res.clean_correct[:FLIPPED].any()
    assert not res.success[:FLIPPED].any(), "misclassified points must not count as successes"
    assert torch.equal(res.x_adv[~res.clean_correct], x[~res.clean_correct])
    assert torch.equal(res.success, res.clean_correct & (res.pred_adv != y))
    assert (res.target == -1).all()
    assert res.attack == name and res.params == attack.params
    assert res.queries.shape == (N,) and res.queries.dtype == torch.int64
    if attack.kind == "decision" or name == "square":
        assert (res.queries[res.clean_correct] > 0).all()
    # seeded: same seed, same result; a deterministic attack ignores the seed
    again = attack(model, x, y, threat, seed=3)
    assert torch.equal(again.x_adv, res.x_adv)
    if attack.deterministic:
        other = attack(model, x, y, threat, seed=4)
        assert torch.equal(other.x_adv, res.x_adv)


@pytest.mark.parametrize("name, norm", CASES)
def test_eps_zero_gives_clean_accuracy(name: str, norm: Norm | str) -> None:
    model = trained_model()
    x, y = batch()
    res = make(name)(model, x, y, threat_for(norm, 0.0))
    assert res.robust_accuracy == res.clean_accuracy
    assert torch.equal(res.x_adv, x)
    assert not res.success.any()


@pytest.mark.parametrize("name", TARGETED)
def test_targeted_success_means_target_reached(name: str) -> None:
    model = train_mode_model()
    x, y = batch()
    targets = (y + 3) % 10
    targets[-1] = y[-1]  # target == label: skipped
    attack = make(name)
    if attack.threat_kind == "patch":
        threat: ThreatModel | PatchThreat = PatchThreat(0.5)
    else:
        threat = ThreatModel(attack.norms[0], 0.3 if attack.norms[0] is Norm.LINF else 2.0)
    res = attack(model, x, y, threat, targets=targets, seed=0)
    assert torch.equal(res.target, targets)
    assert res.targeted
    assert torch.equal(res.success, res.clean_correct & (targets != y) & (res.pred_adv == targets))
    assert not res.success[-1] and not res.success[:FLIPPED].any()
    assert torch.equal(res.x_adv[-1], x[-1])


@pytest.mark.parametrize("name", [n for n in ATTACKS.list() if not ATTACKS.get(n).supports_targeted])
def test_targets_rejected_when_unsupported(name: str) -> None:
    x, y = batch()
    attack = make(name)
    with pytest.raises(ValueError, match="does not support targeted"):
        attack(trained_model(), x, y, threat_for(threats_of(name)[0]), targets=(y + 1) % 10)


def test_unsupported_norm_lists_supported_norms() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"does not support norm l1: supported: linf, l2"):
        make("pgd")(trained_model(), x, y, ThreatModel(Norm.L1, 1.0))
    with pytest.raises(ValueError, match=r"does not support norm linf: supported: l2"):
        make("cw-l2")(trained_model(), x, y, ThreatModel(Norm.LINF, 0.1))


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda x, y: (x * 2, y), r"x must be finite and in \[0, 1\]"),
        (lambda x, y: (x[0], y), r"x must be a tensor N x C x H x W"),
        (lambda x, y: ((x * 255).to(torch.uint8), y), r"x must be a float tensor"),
        (lambda x, y: (x, y.float()), r"y must be an int64 tensor of shape \(12,\)"),
        (lambda x, y: (x, y[:5]), r"y must be an int64 tensor of shape \(12,\)"),
        (lambda x, y: (x, y + 10), r"labels y must lie in \[0, 10\)"),
    ],
)
def test_invalid_inputs(bad, match: str) -> None:
    x, y = batch()
    xb, yb = bad(x, y)
    with pytest.raises(ValueError, match=match):
        make("fgsm")(trained_model(), xb, yb, ThreatModel(Norm.LINF, 0.1))


def test_invalid_targets_and_threat() -> None:
    x, y = batch()
    fgsm = make("fgsm")
    with pytest.raises(ValueError, match=r"targets must be an int64 tensor of shape \(12,\)"):
        fgsm(trained_model(), x, y, ThreatModel(Norm.LINF, 0.1), targets=y[:3])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 10\)"):
        fgsm(trained_model(), x, y, ThreatModel(Norm.LINF, 0.1), targets=y + 10)
    with pytest.raises(ValueError, match="threat must be a ThreatModel"):
        fgsm(trained_model(), x, y, "linf:0.1")  # type: ignore[arg-type]


def test_a_threat_of_the_wrong_kind_is_refused() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"attack 'fgsm' does not support a patch threat: it attacks in a norm ball"):
        make("fgsm")(trained_model(), x, y, PatchThreat(0.1))
    for name in ATTACKS.list():
        if ATTACKS.get(name).threat_kind == "patch":
            with pytest.raises(ValueError, match=rf"attack '{name}' is a patch attack: give a patch threat patch:AREA"):
                make(name)(trained_model(), x, y, ThreatModel(Norm.LINF, 0.1))
            with pytest.raises(ValueError, match=r"patch:0.01: not one pixel of a 8 x 8 image"):
                make(name)(trained_model(), x, y, PatchThreat(0.01))


def test_a_patch_mask_over_budget_is_refused() -> None:
    class Greedy(Attack):  # claims a patch of the whole image
        threat_kind = "patch"
        norms = ()
        defaults = {}

        def perturb(self, model, x, y, threat, targets, generator):
            return torch.ones_like(x), torch.ones(x.shape[0], 1, *x.shape[2:], dtype=torch.bool)

    x, y = batch()
    with pytest.raises(RuntimeError, match=r"returned a mask of more than 9 pixels \(patch:0.2\)"):
        Greedy()(trained_model(), x, y, PatchThreat(0.2))
    with pytest.raises(TypeError, match="a patch attack has no norms"):
        type("Both", (Attack,), {"threat_kind": "patch"})


def test_mode_restored_on_exception() -> None:
    class Boom(Attack):
        defaults = {}

        def perturb(self, model, x, y, threat, targets, generator):
            raise RuntimeError("boom")

    model = train_mode_model()
    model.head[1].eval()  # a mixed state must come back as it was
    x, y = held_out(4)
    with pytest.raises(RuntimeError, match="boom"):
        Boom()(model, x, y, ThreatModel(Norm.LINF, 0.1))
    assert model.training and not model.head[1].training and model.features[0].training
    assert all(p.requires_grad for p in model.parameters())


def test_mini_batches_cover_every_point() -> None:
    model = trained_model()
    x, y = held_out(10)
    full = make("fgsm")(model, x, y, ThreatModel(Norm.LINF, 0.1))
    chunked = make("fgsm")(model, x, y, ThreatModel(Norm.LINF, 0.1), batch_size=3)
    assert torch.allclose(full.x_adv, chunked.x_adv, atol=1e-6)
    assert torch.equal(full.success, chunked.success)


def test_registry_and_params() -> None:
    assert {
        "fgsm",
        "pgd",
        "mi-fgsm",
        "di-fgsm",
        "di-mi-fgsm",
        "cw-l2",
        "deepfool",
        "boundary",
        "hopskipjump",
        "foolbox-pgd",
        "apgd-ce",
        "apgd-dlr",
        "apgd-t",
        "fab-t",
        "square",
        "autoattack",
    } <= set(ATTACKS.list())
    with pytest.raises(UnknownNameError, match="Did you mean: pgd"):
        get_attack("pgdd")
    with pytest.raises(ValueError, match=r"invalid parameter\(s\) stepz for attack 'pgd': accepted: "):
        get_attack("pgd", stepz=3)
    with pytest.raises(ValueError, match="invalid AutoAttack version 'fast'"):
        get_attack("autoattack", version="fast")
    pgd = get_attack("pgd", steps=7)
    assert pgd.params["steps"] == 7 and pgd.params["restarts"] == 1 and pgd.name == "pgd"
    # --param random_start=False arrives as the string 'False': a boolean default parses it strictly
    assert get_attack("pgd", random_start="False", early_stop="no").params["random_start"] is False
    assert get_attack("pgd", early_stop="no").params["early_stop"] is False
    assert get_attack("pgd", random_start="true").params["random_start"] is True
    with pytest.raises(ValueError, match=r"invalid random_start 'maybe' for attack 'pgd': must be true or false"):
        get_attack("pgd", random_start="maybe")
    # counts become ints (--param steps=1e3 arrives as 1000.0, which foolbox's and pyautoattack's loops reject)
    for name, key in (("cw-l2", "steps"), ("pgd", "steps"), ("apgd-ce", "n_iter"), ("square", "n_queries")):
        value = get_attack(name, **{key: 1e3}).params[key]
        assert value == 1000 and type(value) is int
    assert type(get_attack("pgd", restarts="2").params["restarts"]) is int
    assert get_attack("apgd-ce", rho="0.5").params["rho"] == 0.5
    with pytest.raises(ValueError, match=r"invalid steps 2.5 for attack 'pgd': must be a whole number"):
        get_attack("pgd", steps=2.5)
    for name in ATTACKS.list():
        cls = ATTACKS.get(name)
        assert cls.kind in ("white-box", "score", "decision")
        assert cls.__doc__ and "Example" in cls.__doc__ and "Distance" in cls.__doc__
    with pytest.raises(TypeError, match="must not override Attack.__call__"):
        type("Bad", (Attack,), {"__call__": lambda self: None})


@pytest.mark.parametrize("norm, eps", [(Norm.LINF, 0.1), (Norm.L2, 0.7), (Norm.L1, 3.0), (Norm.L0, 5.0)])
def test_project_onto_ball_and_box(norm: Norm, eps: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=gen)
    wild = x + 2 * torch.randn(64, 1, 8, 8, generator=gen)  # far outside both the ball and the box
    threat = ThreatModel(norm, eps)
    p = project(wild, x, threat)
    assert p.min() >= 0 and p.max() <= 1
    assert (norm.measure(p - x) <= eps + 1e-5).all()
    inside = x + 1e-3 * torch.randn(64, 1, 8, 8, generator=gen).sign() * (x > 0.01) * (x < 0.99)
    if norm is Norm.L0:
        inside = torch.where(torch.arange(64).view(1, 1, 8, 8) < 4, inside, x)
    assert torch.allclose(project(inside, x, threat), inside, atol=1e-6)  # identity in the ball
    if norm is Norm.L1:  # the exact Euclidean projection: the L1 norm is used up to eps
        d = torch.randn(64, 1, 8, 8, generator=gen) * 0.2
        mid = torch.full_like(x, 0.5)
        assert torch.allclose(
            norm.measure(project(mid + d, mid, threat) - mid),
            torch.minimum(norm.measure(d), torch.tensor(eps)),
            atol=1e-4,
        )
