"""Input errors are one line with exit code 2 (never a traceback), and the all-targets matrix is a results table.

Every CLI call passes ``-o`` under ``tmp_path`` (nothing is written into the repository's results/), uses the
embedded digits dataset and an isolated store; no test trains a model.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_helpers import assert_one_line_error
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

from cli import main
from robustbench_cnn.core.errors import (
    ArchOptionError,
    CheckpointError,
    DataNotFoundError,
    RbcError,
    ShapeMismatchError,
    UnknownNameError,
)
from robustbench_cnn.models import MODELS, build_model
from robustbench_cnn.store import ModelCard, load_checkpoint, load_state_dict_file, save_checkpoint, update_card

MODEL_FILE = """\
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

def build3():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

def broken():
    raise ValueError("no such layer\\nsecond line")
"""


def run(*args: str):
    return CliRunner().invoke(main, ["--threads", "1", *args])


@pytest.fixture()
def byom(tmp_path: Path) -> Path:
    """A model file with 10- and 3-class factories, and weights for each."""
    (tmp_path / "net.py").write_text(MODEL_FILE)
    torch.manual_seed(0)
    save_file(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), str(tmp_path / "w10.safetensors"))
    save_file(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).state_dict(), str(tmp_path / "w3.safetensors"))
    return tmp_path


def _card(name: str = "digits/lenet5-standard") -> ModelCard:
    return ModelCard(
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


def _saved_lenet(store: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, num_classes=10, input_size=8, mean=[0.3], std=[0.4]).eval()
    return save_checkpoint(model, _card(), store)


# --- 1. bring your own model ---------------------------------------------------------------------------


def test_byom_with_the_wrong_number_of_classes_is_a_shape_error(store, byom) -> None:
    result = run(
        "evaluate",
        "--model-def",
        f"{byom / 'net.py'}:build3",
        "--weights",
        str(byom / "w3.safetensors"),
        "-c",
        "quick",
        "--eps",
        "0.1",
        "-n",
        "20",
        "-o",
        str(byom / "run"),
        "--no-progress",
    )
    assert_one_line_error(result, "returns 3 class scores, but dataset 'digits' has 10 classes")


def test_check_input_raises_shape_mismatch_for_the_class_count() -> None:
    from robustbench_cnn.byom import check_input

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ShapeMismatchError, match="returns 3 class scores"):
        check_input(model, torch.rand(2, 1, 8, 8), "m.py:f", "digits")
    check_input(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.rand(2, 1, 8, 8), "m.py:f", "digits")


@pytest.mark.parametrize(
    "source, factory, message",
    [
        ("def build(:\n    pass\n", "build", "SyntaxError: invalid syntax"),
        ("import no_such_module_rbc\n", "build", "ModuleNotFoundError: No module named 'no_such_module_rbc'"),
        ("raise RuntimeError('boom')\n", "build", "RuntimeError: boom"),
        (MODEL_FILE, "broken", "broken() raised ValueError: no such layer second line"),
    ],
)
def test_a_broken_model_file_is_one_line_naming_the_file(tmp_path, source, factory, message) -> None:
    from robustbench_cnn.byom import load_model_def

    path = tmp_path / "user_net.py"
    path.write_text(source)
    with pytest.raises(RbcError) as info:
        load_model_def(f"{path}:{factory}", None, torch.device("cpu"))
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_cli_syntax_error_in_model_file_is_one_line(store, tmp_path) -> None:
    (tmp_path / "bad.py").write_text("def build(:\n    pass\n")
    result = run(
        "attack",
        "--model-def",
        f"{tmp_path / 'bad.py'}:build",
        "-a",
        "fgsm",
        "--eps",
        "0.1",
        "-n",
        "10",
        "-o",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert_one_line_error(result, f"{tmp_path / 'bad.py'}: SyntaxError")


# --- 2. architecture options ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS.list()))
def test_unknown_arch_option_is_an_rbc_error_and_a_type_error(name) -> None:
    with pytest.raises(ArchOptionError, match="unexpected option") as info:
        build_model(name, in_channels=1, num_classes=10, input_size=8, no_such_option=3)
    assert isinstance(info.value, TypeError) and isinstance(info.value, RbcError)


def test_cli_train_with_unknown_arch_arg_is_one_line(store, tmp_path) -> None:
    result = run("train", "-m", "lenet5", "-p", "foo=1", "--epochs", "1", "--no-progress")
    assert_one_line_error(result, "lenet5 got unexpected option(s) foo")
    result = run("train", "-m", "resnet18", "-p", "foo=1", "--epochs", "1", "--no-progress")
    assert_one_line_error(result, "resnet18 got unexpected option(s) foo")


def test_card_with_bad_arch_kwargs_names_the_checkpoint(store) -> None:
    folder = _saved_lenet(store)
    card = _card()
    card.weights_sha256 = json.loads((folder / "card.json").read_text())["weights_sha256"]
    card.arch_kwargs = {"foo": 1}
    update_card(folder, card)
    with pytest.raises(ArchOptionError, match="checkpoint 'digits/lenet5-standard': lenet5 got unexpected"):
        load_checkpoint("digits/lenet5-standard")


# --- 3. one-line messages for files and downloads --------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_and_malicious_pt_files_are_refused_in_one_line(tmp_path, capsys) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil, corrupt = tmp_path / "evil.pt", tmp_path / "corrupt.pt"
    torch.save({"w": Evil()}, evil)
    corrupt.write_bytes(b"\x80\x04this is not a checkpoint" * 10)
    for path in (evil, corrupt):
        with pytest.raises(CheckpointError) as info:
            load_state_dict_file(path)
        text = str(info.value)
        assert "\n" not in text and "not a weights-only checkpoint" in text and str(path) in text, text
    assert "pwned" not in capsys.readouterr().out


def test_byom_state_dict_mismatch_names_the_offending_key(byom) -> None:
    from robustbench_cnn.byom import load_model_def

    with pytest.raises(CheckpointError) as info:
        load_model_def(f"{byom / 'net.py'}:build3", str(byom / "w10.safetensors"), torch.device("cpu"))
    text = str(info.value)
    assert "size mismatch for 1.weight" in text and "\n" not in text, text
    save_file({"other.weight": torch.zeros(3, 64)}, str(byom / "wrong_keys.safetensors"))
    with pytest.raises(CheckpointError, match="Missing key"):
        load_model_def(f"{byom / 'net.py'}:build3", str(byom / "wrong_keys.safetensors"), torch.device("cpu"))


def test_store_state_dict_mismatch_names_the_offending_key(store) -> None:
    folder = _saved_lenet(store)
    card = _card()
    card.weights_sha256 = json.loads((folder / "card.json").read_text())["weights_sha256"]
    card.num_classes = 7  # the head no longer fits the saved weights
    update_card(folder, card)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint("digits/lenet5-standard")
    text = str(info.value)
    assert "size mismatch for net." in text and "\n" not in text, text


def test_failed_download_is_one_line_naming_the_local_path(tmp_path, monkeypatch) -> None:
    import torchvision.datasets as tvd

    from robustbench_cnn.data import load_split

    class Unreachable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                "Error downloading train-images-idx3-ubyte.gz:\n"
                "Tried https://example.invalid/mnist/, got:\n\n"
                "<urlopen error [Errno -3] Temporary failure in name resolution>\n"
            )

    monkeypatch.delenv("RBC_OFFLINE", raising=False)
    monkeypatch.setattr(tvd, "MNIST", Unreachable)
    with pytest.raises(DataNotFoundError) as info:
        load_split("mnist", "test", n=10, data_dir=tmp_path)
    text = str(info.value)
    assert "\n" not in text and str(tmp_path / "MNIST") in text and "urlopen error" in text, text


# --- 4. parameters and cascade names -------------------------------------------------------------------


def test_bad_param_value_names_the_parameter(store, tmp_path) -> None:
    result = run(
        "attack",
        "-m",
        "digits/lenet5-standard",
        "-a",
        "pgd",
        "-p",
        "steps=abc",
        "--eps",
        "0.1",
        "-n",
        "10",
        "-o",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert_one_line_error(result, "invalid steps 'abc' for attack 'pgd'")


def test_numeric_strings_are_still_accepted_as_attack_parameters() -> None:
    from robustbench_cnn.attacks import get_attack

    steps = get_attack("pgd", steps="20").params["steps"]
    assert steps == 20 and type(steps) is int  # a numeric string is accepted and becomes the number


@pytest.mark.parametrize(
    "attack,key", [("pgd", "rel_stepsize"), ("pgd", "abs_stepsize"), ("mi-fgsm", "alpha"), ("foolbox-pgd", "steps")]
)
def test_optional_numeric_params_given_as_text_are_checked_and_named(attack, key) -> None:
    from robustbench_cnn.attacks import get_attack

    with pytest.raises(ValueError, match=f"invalid {key} 'abc' for attack '{attack}': must be a number"):
        get_attack(attack, **{key: "abc"})
    assert get_attack(attack, **{key: "0.5"}).params[key] == 0.5  # numeric text becomes the number
    assert get_attack(attack).params[key] is None


def test_unknown_cascade_suggests_cascade_names(store, tmp_path) -> None:
    result = run(
        "evaluate",
        "-m",
        "digits/lenet5-standard",
        "-c",
        "quik",
        "--eps",
        "0.1",
        "-n",
        "10",
        "-o",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert_one_line_error(result, "Did you mean: quick")
    from robustbench_cnn.core.types import Norm
    from robustbench_cnn.evaluation.engine import resolve_attacks

    with pytest.raises(UnknownNameError, match="Did you mean: quick"):
        resolve_attacks("pgd,quik", Norm.LINF)


# --- 5. the all-targets matrix -------------------------------------------------------------------------

MATRIX_COLUMNS = {"model", "attack", "norm", "eps", "true_class", "target_class", "success_rate", "n"}


def _check_matrix_folder(folder: Path, eps: list[float], num_classes: int = 10) -> pd.DataFrame:
    table = pd.read_parquet(folder / "target_matrix.parquet")
    assert MATRIX_COLUMNS <= set(table.columns)
    assert len(table) == len(eps) * num_classes * (num_classes - 1)
    assert sorted(table["eps"].unique()) == eps and not (table["true_class"] == table["target_class"]).any()
    rates = table["success_rate"].dropna()
    assert ((rates >= 0) & (rates <= 1)).all()
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["cells"][0]["target_policy"] == "all"
    return table


def test_target_matrix_is_written_to_the_run_folder(store, tmp_path) -> None:
    _saved_lenet(store)
    out = tmp_path / "tm"
    result = run(
        "attack",
        "-m",
        "digits/lenet5-standard",
        "-a",
        "fgsm",
        "--eps",
        "0.1,0.2",
        "-n",
        "30",
        "--targeted",
        "--target-policy",
        "all",
        "-o",
        str(out),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    table = _check_matrix_folder(out, [0.1, 0.2])
    assert set(table["model"]) == {"digits/lenet5-standard"} and set(table["attack"]) == {"fgsm"}
    # n: the correctly classified points of the true class, the same for every target
    assert (table.groupby(["eps", "true_class"])["n"].nunique() == 1).all()
    again = run(
        "attack",
        "-m",
        "digits/lenet5-standard",
        "-a",
        "fgsm",
        "--eps",
        "0.1",
        "-n",
        "30",
        "--targeted",
        "--target-policy",
        "all",
        "-o",
        str(out),
        "--no-progress",
    )
    assert_one_line_error(again, "already holds results")


def test_target_matrix_with_a_model_definition(store, byom) -> None:
    out = byom / "tm"
    result = run(
        "attack",
        "--model-def",
        f"{byom / 'net.py'}:build",
        "--weights",
        str(byom / "w10.safetensors"),
        "-a",
        "fgsm",
        "--eps",
        "0.1",
        "-n",
        "30",
        "--targeted",
        "--target-policy",
        "all",
        "-o",
        str(out),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    table = _check_matrix_folder(out, [0.1])
    assert table["checkpoint_sha256"].str.len().eq(64).all()
    wrong = run(
        "attack",
        "--model-def",
        f"{byom / 'net.py'}:build3",
        "--weights",
        str(byom / "w3.safetensors"),
        "-a",
        "fgsm",
        "--eps",
        "0.1",
        "-n",
        "30",
        "--targeted",
        "--target-policy",
        "all",
        "-o",
        str(byom / "tm3"),
        "--no-progress",
    )
    assert_one_line_error(wrong, "returns 3 class scores")


def test_target_matrix_of_a_cascade_is_a_clear_error(store, tmp_path) -> None:
    _saved_lenet(store)
    result = run(
        "evaluate",
        "-m",
        "digits/lenet5-standard",
        "-c",
        "quick",
        "--eps",
        "0.1",
        "-n",
        "10",
        "--targeted",
        "--target-policy",
        "all",
        "-o",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert_one_line_error(result, "rbc attack -a NAME")
    assert not (tmp_path / "run").exists()


# --- 6. benchmark seed, transfer-matrix, oracle ----------------------------------------------------------


def test_benchmark_seed_zero_overrides_the_plans_seed(store, tmp_path, monkeypatch) -> None:
    import robustbench_cnn.pipeline.benchmark as benchmark_mod
    import robustbench_cnn.pipeline.plan as plan_mod

    seen = {}

    def fake_run_benchmark(plan, out_dir, **kwargs):
        seen["seed"] = plan.seed
        return types.SimpleNamespace(summary=pd.DataFrame(), trained=[], seconds=0.0, run_dir=out_dir, report=None)

    monkeypatch.setattr(plan_mod, "load_plan", lambda name: types.SimpleNamespace(seed=5, name=name))
    monkeypatch.setattr(benchmark_mod, "run_benchmark", fake_run_benchmark)
    for args, expected in ((["--seed", "0"], 0), (["--seed", "3"], 3), ([], 5)):
        result = run("benchmark", "--plan", "ci", "-o", str(tmp_path / "b"), "--no-report", "--no-progress", *args)
        assert result.exit_code == 0, result.output
        assert seen["seed"] == expected, args


def test_transfer_matrix_needs_two_models(store, tmp_path) -> None:
    result = run(
        "transfer-matrix",
        "--models",
        "digits/lenet5-standard",
        "--threat",
        "linf:0.1",
        "-n",
        "10",
        "--out",
        str(tmp_path / "tm"),
        "--no-progress",
    )
    assert_one_line_error(result, "at least 2")


class _Flaky(nn.Module):
    """Counts forward passes; fails while ``fail`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.fail, self.calls = False, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail:
            raise RuntimeError("device lost")
        return self.lin(x.flatten(1))


def test_oracle_charges_only_answered_queries() -> None:
    from robustbench_cnn.attacks.blackbox.oracle import Oracle
    from robustbench_cnn.core.errors import BudgetExceededError

    model = _Flaky()
    oracle = Oracle(model, "labels", budget=5)
    x = torch.rand(3, 1, 2, 2)
    model.fail = True
    with pytest.raises(RuntimeError, match="device lost"):
        oracle(x, ids=torch.arange(3))
    assert oracle.total == 0 and oracle.remaining() == 5 and int(oracle.counts(torch.arange(3)).sum()) == 0
    model.fail = False
    oracle(x, ids=torch.arange(3))
    assert oracle.total == 3 and oracle.counts(torch.arange(3)).tolist() == [1, 1, 1]
    calls = model.calls
    with pytest.raises(BudgetExceededError):
        oracle(x)  # 3 more would exceed 5: refused before the model runs
    assert model.calls == calls and oracle.total == 3


def test_oracle_infinite_budget_means_unlimited() -> None:
    from robustbench_cnn.attacks.blackbox.oracle import Oracle

    oracle = Oracle(_Flaky(), "labels", budget=float("inf"))
    assert oracle.budget is None and oracle.remaining() is None
    for bad in (float("nan"), float("-inf"), -1, 2.5):
        with pytest.raises(ValueError, match="invalid query budget"):
            Oracle(_Flaky(), budget=bad)


def test_key_value_options_read_fractions_as_epsilons_are_written() -> None:
    from robustbench_cnn.commands.errors import parse_key_values
    from robustbench_cnn.defenses import get_defense

    parsed = parse_key_values(("alpha=2/255", "steps=20", "loss=ce", "path=/data/x", "name=a/b"), "--defense-arg")
    assert parsed == {"alpha": 2 / 255, "steps": 20, "loss": "ce", "path": "/data/x", "name": "a/b"}
    # --defense-arg alpha=2/255 used to be refused ("must be a number") while --alpha 2/255 was accepted
    assert get_defense("fgsm-rs", "linf:8/255", **parse_key_values(("alpha=10/255",))).p["alpha"] == 10 / 255
    with pytest.raises(ValueError, match="invalid --param 'eps=1/0': division by zero"):
        parse_key_values(("eps=1/0",))
