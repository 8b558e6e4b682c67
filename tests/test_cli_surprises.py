"""A CLI without surprises: listings that say what is true, interrupted runs that say how to resume, shared
result files, refused NaN models, misspelled plan keys, impossible epsilons, capped sample counts and recorded
cascade figures. CLI calls go through ``CliRunner`` on the embedded digits set, writing under ``tmp_path``."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_helpers import assert_one_line_error
from click.testing import CliRunner

from cli import main
from robustbench_cnn.attacks import ATTACKS
from robustbench_cnn.commands.attack_list import defaults_text, slow_note, targets_text
from robustbench_cnn.commands.models import first_sentence
from robustbench_cnn.commands.options import ATTACK_NORMS_HELP
from robustbench_cnn.core.types import Norm
from robustbench_cnn.defenses.perturb import SUPPORTED_NORMS
from robustbench_cnn.models import MODELS, build_model
from robustbench_cnn.store import ModelCard, save_checkpoint, update_card


def _saved_lenet(store: Path, name: str = "digits/lenet5-standard") -> Path:
    """An untrained LeNet-5 checkpoint for digits in ``store`` (seeded; no test here needs a trained one)."""
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, num_classes=10, input_size=8, mean=[0.3], std=[0.4]).eval()
    card = ModelCard(
        name=name,
        arch="lenet5",
        arch_kwargs={},
        dataset="digits",
        input_shape=[1, 8, 8],
        num_classes=10,
        classes=[str(i) for i in range(10)],
        mean=[0.3],
        std=[0.4],
    )
    return save_checkpoint(model, card, store)


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


# ------------------------------------------------------------------------------------------ 2. norms documented


def _supported_norms() -> dict[str, list[str]]:
    return {n.value: sorted(a for a, cls in ATTACKS.items() if n in cls.norms) for n in Norm}


def test_threat_help_names_exactly_the_norms_the_attacks_support() -> None:
    supported = {norm for norm, attacks in _supported_norms().items() if attacks}
    stated = ATTACK_NORMS_HELP.split(" (")[0].replace(" or ", ",").split(",")
    assert set(stated) == supported
    unsupported = {norm for norm, attacks in _supported_norms().items() if not attacks}
    assert all(norm in ATTACK_NORMS_HELP.split(" (")[1] for norm in unsupported)
    for command in ("attack", "evaluate"):
        help_text = " ".join(run(command, "--help").output.split())
        assert ATTACK_NORMS_HELP in help_text
    defend_help = " ".join(run("defend", "--help").output.split())
    assert f"NORM {' or '.join(n.value for n in SUPPORTED_NORMS)}" in defend_help


def test_readme_norm_table_matches_the_registry() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for norm, attacks in _supported_norms().items():
        defenses = "all" if Norm(norm) in SUPPORTED_NORMS else "none"
        assert f"| {norm} | {', '.join(attacks) or 'none'} | {defenses} |" in readme, norm


def test_an_unsupported_norm_is_one_line(store, tmp_path) -> None:
    _saved_lenet(store)
    result = run("attack", "-m", "digits/lenet5-standard", "--threat", "l1:1", "-n", "8", "-o", str(tmp_path / "r"))
    assert_one_line_error(result, "does not support norm l1: use linf, l2")


# ------------------------------------------------------------------------------------------ 3. Ctrl-C


def _two_model_plan(store: Path, tmp_path: Path, extra: str = "") -> Path:
    """A plan over two stored (untrained) checkpoints, one fast attack, 8 points: two white-box cells."""
    for name in ("digits/a", "digits/b"):
        _saved_lenet(store, name)
    plan = tmp_path / "two.toml"
    plan.write_text(
        'name = "two"\ndatasets = ["digits"]\nn = 8\n'
        '[threat]\nnorm = "linf"\neps = [0.1]\n[whitebox]\ncascade = "fgsm"\n'
        '[[models]]\narch = "lenet5"\ncheckpoint = "digits/a"\n'
        '[[models]]\narch = "lenet5"\ncheckpoint = "digits/b"\n' + extra
    )
    return plan


def test_ctrl_c_names_the_folder_and_the_resume_command_and_resume_reuses(store, tmp_path, monkeypatch) -> None:
    from robustbench_cnn.pipeline.cells.whitebox import Whitebox

    plan = _two_model_plan(store, tmp_path)
    out = tmp_path / "run"
    real_run, calls = Whitebox.run, []

    def interrupted_second(self, cell, progress=False):
        calls.append(cell.model)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(self, cell, progress)

    monkeypatch.setattr(Whitebox, "run", interrupted_second)
    result = run("--seed", "0", "benchmark", "--plan", str(plan), "-o", str(out), "--no-report", "--no-progress")
    assert result.exit_code == 130, result.output
    assert "Aborted!" not in result.output
    assert f"Interrupted: 1 of 2 cells finished are in {out}" in result.output
    expected = f"continue with: rbc benchmark --plan {plan} --no-report --no-progress --threads 1 --seed 0 --out {out} --resume"
    assert expected in result.output
    kept = {p.name.split("-whitebox")[0] for p in (out / "cells").glob("*.summary.parquet")}
    assert kept == {"digits_a"}  # the finished cell was kept, the interrupted one not written

    monkeypatch.setattr(Whitebox, "run", real_run)
    resumed = run("benchmark", "--plan", str(plan), "-o", str(out), "--no-report", "--no-progress", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed {out}: reused 1 of 2 cells, ran 1" in " ".join(resumed.output.split())


def test_ctrl_c_in_rbc_attack_offers_its_resume_command(store, tmp_path, monkeypatch) -> None:
    from robustbench_cnn.pipeline.cells.whitebox import Whitebox

    _saved_lenet(store)

    def interrupt(self, cell, progress=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(Whitebox, "run", interrupt)
    out = tmp_path / "r"
    result = run("attack", "-m", "digits/lenet5-standard", "-a", "fgsm", "--eps", "0.1", "-n", "8", "--out", str(out))
    assert result.exit_code == 130, result.output
    assert "Interrupted: 0 of 1 cells finished" in result.output
    assert (
        f"rbc attack -m digits/lenet5-standard -a fgsm --eps 0.1 -n 8 --threads 1 --out {out} --resume" in result.output
    )


# ------------------------------------------------------------------------------------------ 4. file modes


@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_atomic_writes_respect_the_umask(tmp_path, umask) -> None:
    import pandas as pd

    from robustbench_cnn.store import _atomic_write_bytes
    from robustbench_cnn.tables.results import atomic_write_parquet, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text("{}", tmp_path / "run.json")
        atomic_write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "summary.parquet")
        _atomic_write_bytes(tmp_path / "card.json", b"{}")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what an ordinary open() gives under this umask
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == expected
    for name in ("run.json", "summary.parquet", "card.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


# ------------------------------------------------------------------------------------------ 5. NaN models

NAN_MODEL = """\
import torch
from torch import nn


class HalfNaN(nn.Module):
    '''A linear model whose logits are NaN for the images whose fourth pixel (top row) is above 0.5.'''

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return torch.where(x.flatten(1)[:, 3:4] > 0.5, torch.full_like(out, float("nan")), out)


def build():
    return HalfNaN()
"""


def _nan_images() -> tuple[torch.Tensor, torch.Tensor, int]:
    """16 seeded images, 5 of them with a fourth pixel above 0.5 (the planted model's NaN rows)."""
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[:, 0, 0, 3] = 0.0
    x[:5, 0, 0, 3] = 0.9
    return x, torch.arange(16) % 10, 5


def test_a_model_with_nan_logits_is_refused_before_any_attack(monkeypatch) -> None:
    from robustbench_cnn.attacks.base import Attack
    from robustbench_cnn.evaluation.engine import evaluate
    from robustbench_cnn.evaluation.flags import NonFiniteOutputError

    namespace: dict = {}
    exec(NAN_MODEL, namespace)
    x, y, bad = _nan_images()
    attacked = []
    monkeypatch.setattr(Attack, "__call__", lambda *a, **k: attacked.append(1))
    with pytest.raises(NonFiniteOutputError, match=f"{bad * 10} NaN of 160 outputs \\({bad} of 16 images\\)"):
        evaluate(namespace["build"](), x, y, "linf", [0.0, 0.1], "quick")
    assert not attacked


def test_cli_refuses_a_nan_model_in_one_line(tmp_path) -> None:
    (tmp_path / "nan.py").write_text(NAN_MODEL)
    result = run(
        "evaluate", "--model-def", f"{tmp_path / 'nan.py'}:build", "-c", "quick", "--eps", "0.1", "-n", "64",
        "-o", str(tmp_path / "r"),
    )  # fmt: skip
    line = assert_one_line_error(result, "0 NaN of 640 outputs (")  # whole rows of 10 classes are NaN
    assert "on the clean pass: refusing to evaluate it" in line


# ------------------------------------------------------------------------------------------ 6. plan keys


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sed": 1}, "unknown top-level key 'sed' (did you mean 'seed'?)"),
        ({"threat": {"epsilon": [0.1]}}, "unknown [threat] key 'epsilon' (did you mean 'eps'?); accepted: eps, norm"),
        ({"whitebox": {"suit": "quick"}}, "unknown [whitebox] key 'suit' (did you mean 'cascade'?)"),
        ({"whitebox": {"cascades": "quick"}}, "unknown [whitebox] key 'cascades' (did you mean 'cascade'?)"),
        ({"targeted": {"polcy": "next"}}, "unknown [targeted] key 'polcy' (did you mean 'policy'?)"),
        ({"transfer": {"atack": "fgsm"}}, "unknown [transfer] key 'atack' (did you mean 'attack'?)"),
        ({"report": {"epsilon": 0.1}}, "unknown [report] key 'epsilon' (did you mean 'eps'?)"),
        ({"proxy": {"budgte": 400}}, "unknown [proxy] key 'budgte' (did you mean 'budget'?)"),
        ({"models": [{"arch": "lenet5", "recipie": "pgd-at"}]}, "unknown [[models]] key 'recipie' (did you mean"),
        ({"threat": "linf"}, "threat must be a table ([threat])"),
    ],
)
def test_a_misspelled_plan_key_is_an_error_with_the_closest_key(extra, message) -> None:
    from robustbench_cnn.core.errors import RbcError
    from robustbench_cnn.pipeline.plan import parse_plan

    data = {"models": [{"arch": "lenet5"}, {"arch": "mlp"}], **extra}
    with pytest.raises(RbcError) as info:
        parse_plan(data, "p.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_built_in_plan_passes_the_key_check() -> None:
    from robustbench_cnn.pipeline.plan import PLANS_DIR, load_plan

    plans = sorted(p.stem for p in PLANS_DIR.glob("*.toml"))
    assert plans and all(load_plan(name).name for name in plans)


def test_cli_benchmark_refuses_a_misspelled_plan_key_in_one_line(store, tmp_path) -> None:
    plan = tmp_path / "typo.toml"
    plan.write_text('name = "typo"\n[threat]\nnorm = "linf"\nepsilon = [0.1]\n[[models]]\narch = "lenet5"\n')
    result = run("benchmark", "--plan", str(plan), "-o", str(tmp_path / "r"), "--no-report")
    assert_one_line_error(result, "unknown [threat] key 'epsilon' (did you mean 'eps'?)")
    assert not (tmp_path / "r").exists()  # refused before any folder or training


# ------------------------------------------------------------------------------------------ 7. impossible eps


def test_eps_warnings_use_the_largest_distance_of_the_input_shape() -> None:
    from robustbench_cnn.evaluation.flags import eps_warnings, max_distance

    assert max_distance(Norm.L2, 64) == 8.0 and max_distance(Norm.L1, 64) == 64.0 and max_distance(Norm.LINF, 64) == 1
    shape = (1, 8, 8)
    assert eps_warnings(Norm.L2, [0.5, 3.9], shape) == []  # below half the diameter (4): nothing to say
    (grey,) = eps_warnings(Norm.L2, [4.0], shape)
    assert "uniform grey" in grey
    (broken,) = eps_warnings(Norm.L2, [1000.0], shape)
    assert "sqrt(64) = 8" in broken and "every point is trivially broken" in broken
    assert "trivially broken" in eps_warnings(Norm.L1, [64.0], shape)[0]
    assert "uniform grey" in eps_warnings(Norm.LINF, [0.5], shape)[0]


def test_cli_warns_before_the_run_when_eps_exceeds_the_image_diameter(store, tmp_path) -> None:
    _saved_lenet(store)
    result = run(
        "attack", "-m", "digits/lenet5-standard", "-a", "fgsm", "--threat", "l2", "--eps", "1000", "-n", "8",
        "-o", str(tmp_path / "r"), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    warning = "Warning: eps 1000 is at least the largest l2 distance between two 1x8x8 images"
    assert warning in text and text.index(warning) < text.index("summary")  # before the run's table


# ------------------------------------------------------------------------------------------ 8. capped -n


def test_cli_notes_an_n_capped_at_the_split_size(store, tmp_path) -> None:
    _saved_lenet(store)
    common = ["-m", "digits/lenet5-standard", "-a", "fgsm", "--eps", "0.1", "--no-progress"]
    result = run("attack", *common, "-n", "100000", "-o", str(tmp_path / "big"))
    assert result.exit_code == 0, result.output
    assert "Note: -n 100000 is more than the digits test split holds: evaluated all 450 images" in result.output
    small = run("attack", *common, "-n", "8", "-o", str(tmp_path / "small"))
    assert small.exit_code == 0 and "Note: -n" not in small.output


# ------------------------------------------------------------------------------------------ 9. card figures


def _worst_case(acc: float, n: int, eps: float = 0.1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cascade": ["standard"],
            "targeted": [False],
            "attack": ["worst-case"],
            "norm": ["linf"],
            "eps": [eps],
            "robust_acc": [acc],
            "n": [n],
            "seed": [0],
        }
    )


def test_a_smaller_n_figure_never_replaces_a_larger_n_one(store, capsys) -> None:
    from robustbench_cnn.pipeline.workflows import CASCADE_META_KEY, CASCADE_ROBUST_KEY, record_cascade_accuracy
    from robustbench_cnn.reporting.tradeoff import tradeoff_table
    from robustbench_cnn.store import read_card

    folder = _saved_lenet(store)
    card = read_card(folder)
    card.threat = "linf:0.1"  # a defended model: it has a trade-off row
    update_card(folder, card)
    assert record_cascade_accuracy(folder, _worst_case(0.40, 1000)) == {"linf:0.1": 0.40}
    meta = read_card(folder).extra[CASCADE_META_KEY]["linf:0.1"]
    assert meta["n"] == 1000 and meta["cascade"] == "standard" and meta["date"] == dt.date.today().isoformat()

    assert record_cascade_accuracy(folder, _worst_case(0.70, 100)) == {}  # n=100 < 1000: kept
    assert "kept the card's standard figure at linf:0.1 (0.4000, n=1000)" in capsys.readouterr().err
    assert read_card(folder).extra[CASCADE_ROBUST_KEY] == {"linf:0.1": 0.40}

    assert record_cascade_accuracy(folder, _worst_case(0.38, 2000)) == {"linf:0.1": 0.38}  # larger n replaces
    row = tradeoff_table(store).iloc[0]
    assert row["suite_robust_accuracy"] == 0.38 and row["suite_n"] == 2000


def test_rbc_tradeoff_shows_n(store, tmp_path) -> None:
    from robustbench_cnn.pipeline.workflows import record_cascade_accuracy
    from robustbench_cnn.store import read_card

    folder = _saved_lenet(store)
    card = read_card(folder)
    card.threat = "linf:0.1"
    update_card(folder, card)
    record_cascade_accuracy(folder, _worst_case(0.40, 321))
    result = run("tradeoff", "-o", str(tmp_path / "t.csv"))
    assert result.exit_code == 0, result.output
    assert "robust_n" in result.output and "321" in result.output


# ------------------------------------------------------------------------------------------ 10. usage errors


def test_click_usage_errors_are_one_line_too() -> None:
    assert_one_line_error(run("attack", "--bogus"), "No such option '--bogus'")
    assert_one_line_error(run("transfer", "--source", "a"), "Missing option '--target'")
