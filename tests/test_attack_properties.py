"""Attack properties are declared on each attack, never inferred from its name, and the evaluation reads them."""

from __future__ import annotations

import pytest
from attack_fixtures import held_out, trained_model

from robustbench_cnn.attacks import ATTACKS, Attack, get_attack
from robustbench_cnn.attacks.fgsm import FGSM
from robustbench_cnn.evaluation.engine import CASCADES, evaluate, with_eot

PROPERTIES = ("single_step", "black_box", "supports_targeted", "eot_param")


@pytest.mark.parametrize("name", ATTACKS.list())
def test_every_registered_attack_declares_its_properties(name: str) -> None:
    cls = ATTACKS.get(name)
    for prop in PROPERTIES:  # set by the attack or its family's base class, not left at Attack's default
        assert any(prop in klass.__dict__ for klass in cls.__mro__ if klass is not Attack), (name, prop)
    assert isinstance(cls.single_step, bool) and isinstance(cls.black_box, bool)
    assert cls.black_box == (cls.kind in ("score", "decision"))
    assert cls.eot_param is None or cls.eot_param in cls.defaults
    assert cls.threat_kind in ("ball", "patch") and isinstance(cls.universal, bool)
    assert (cls.threat_kind == "patch") == (cls.norms == ())


def test_declared_properties_of_the_known_attacks() -> None:
    assert [n for n in ATTACKS.list() if ATTACKS.get(n).single_step] == ["fgsm"]
    assert {n for n in ATTACKS.list() if ATTACKS.get(n).black_box} == {
        "square",
        "square-check",
        "boundary",
        "hopskipjump",
    }
    eot = {n: ATTACKS.get(n).eot_param for n in ATTACKS.list() if ATTACKS.get(n).eot_param}
    assert eot == {
        "pgd": "eot_samples",
        "apgd-ce": "eot_iter",
        "apgd-dlr": "eot_iter",
        "apgd": "eot_iter",
        "apgd-mt": "eot_iter",
        "patch": "eot_samples",
    }
    assert {n for n in ATTACKS.list() if ATTACKS.get(n).threat_kind == "patch"} == {"patch"}
    assert {n for n in ATTACKS.list() if ATTACKS.get(n).universal} == {"patch"}


def test_inconsistent_declarations_are_refused() -> None:
    with pytest.raises(TypeError, match="black_box must be True for a score attack"):
        type("Peek", (Attack,), {"kind": "score"})
    with pytest.raises(TypeError, match="eot_param 'samples' is not one of its parameters"):
        type("Blur", (Attack,), {"eot_param": "samples", "defaults": {"steps": 1}})


def test_eot_goes_through_the_declared_parameter() -> None:
    class Averaging(Attack):
        eot_param = "draws"
        defaults = {"draws": 1}

    chain, changed = with_eot([Averaging(), get_attack("fgsm")], 5)
    assert chain[0].params["draws"] == 5 and changed == ["averaging"]


def test_masking_check_fires_for_a_single_step_attack_under_any_name(monkeypatch: pytest.MonkeyPatch) -> None:
    class Lunge(FGSM):  # an FGSM registered under another name: the check reads single_step, not the name
        registry_name = "lunge"

    monkeypatch.setitem(ATTACKS._entries, "lunge", Lunge)
    x, y = held_out(120)
    weak_pgd = get_attack("pgd", steps=2, abs_stepsize=0.001, random_start=False)
    ev = evaluate(trained_model(), x, y, "linf", [0.2], [weak_pgd, "lunge"])
    flagged = [f for f in ev.flags if f.code == "single-step-beats-iterative"]
    assert flagged and "lunge broke" in flagged[0].message
    # not single-step: the same points broken by an iterative attack are not a masking sign
    monkeypatch.setattr(Lunge, "single_step", False)
    ev = evaluate(trained_model(), x, y, "linf", [0.2], [weak_pgd, "lunge"])
    assert "single-step-beats-iterative" not in {f.code for f in ev.flags}


def test_cascade_presets_are_registered() -> None:
    assert {"fast", "fast-rand", "quick", "standard", "plus"} <= set(CASCADES)
