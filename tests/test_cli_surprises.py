"""A CLI without surprises: listings that say what is true, interrupted runs that say how to resume, shared
result files, refused NaN models, misspelled plan keys, impossible epsilons, capped sample counts and recorded
cascade figures. CLI calls go through ``CliRunner`` on the embedded digits set, writing under ``tmp_path``."""

from __future__ import annotations

from click.testing import CliRunner

from cli import main
from robustbench_cnn.attacks import ATTACKS
from robustbench_cnn.commands.attack_list import defaults_text, slow_note, targets_text
from robustbench_cnn.commands.models import first_sentence
from robustbench_cnn.models import MODELS


def run(*args: str):
    return CliRunner().invoke(main, ["--threads", "1", *args])


# ------------------------------------------------------------------------------------------ 1. listings


def test_internally_targeted_attacks_are_declared_and_listed_as_such() -> None:
    internal = {name for name, cls in ATTACKS.items() if getattr(cls, "internally_targeted", False)}
    assert internal == {"apgd-t", "fab-t"}
    assert targets_text(ATTACKS.get("apgd-t")) == "internal (9 classes)"
    assert targets_text(ATTACKS.get("pgd")) == "user"
    assert targets_text(ATTACKS.get("apgd-ce")) == "no"
    for name in internal:  # internal targets never mean that user targets are accepted
        assert not ATTACKS.get(name).supports_targeted


def test_attacks_list_shows_targets_compact_defaults_and_the_slow_note() -> None:
    result = run("attacks", "list")
    assert result.exit_code == 0, result.output
    assert "internal (9 classes)" in result.output
    assert "n_iter=100 n_restarts=1 rho=0.75 eot_iter=1" in result.output  # apgd-ce's defaults, one line
    assert '{"' not in result.output  # no raw JSON
    note = slow_note(ATTACKS.get("cw-l2").defaults)
    assert note.startswith("slow: 9 x 10,000 steps") and "-p steps=1000" in note
    assert note in result.output
    assert slow_note(ATTACKS.get("pgd").defaults) == ""
    assert defaults_text({"a": 0.5, "b": None, "c": True, "d": "ce"}) == "a=0.5 b=None c=True d=ce"


def test_model_descriptions_end_with_an_ellipsis_when_cut() -> None:
    assert first_sentence("Short one. Second sentence.") == "Short one."
    assert first_sentence("GoogLeNet (Szegedy et al. 2015, x). More.") == "GoogLeNet (Szegedy et al. 2015, x)."
    cut = first_sentence("word " * 60, width=40)
    assert cut.endswith("…") and len(cut) <= 40 and not cut[:-1].endswith(" ")
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    rows = [ln for ln in result.output.splitlines() if ln.startswith("│ ")]
    described = [ln.split("│")[2].strip() for ln in rows if ln.split("│")[1].strip() in MODELS]
    assert len(described) == len(MODELS.list("*"))
    assert all(d.endswith((".", "…")) for d in described), described
