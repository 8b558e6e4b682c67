"""The ``[patch]`` table of a benchmark plan (issue 19): it expands into ``patch`` cells after each chosen model's
training cell, runs through ``rbc benchmark`` into ``patch.parquet`` and the "Adversarial patches" board, and its
settings are checked before any work (unknown keys name the accepted ones). Digits, a 1-epoch LeNet-5, 2-step
patches: plumbing only, no figure here depends on accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import assert_one_line_error
from click.testing import CliRunner

from cli import main
from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.pipeline.cells.patch import UNTARGETED
from robustbench_cnn.pipeline.plan import PLAN_SCHEMA, load_plan, parse_plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TINY = """
datasets = ["digits"]
n = 20
[threat]
norm = "linf"
eps = [0.0, 0.1]
[whitebox]
cascade = "fgsm"
[[models]]
arch = "lenet5"
epochs = 1
"""
BASE = tomllib.loads(TINY + '[[models]]\narch = "mlp"\nepochs = 1\n')
PATCH = {"models": ["lenet5-standard"], "sizes": [0.5, 0.2], "targets": ["none", 3], "n": 12, "train_n": 40}
PATCH_TOML = """
[patch]
models = ["lenet5-standard"]
sizes = [0.2, 0.5]
targets = ["none", 3]
n = 12
train_n = 40
params = { steps = 2, batch = 8, restarts = 1 }
"""


def test_a_plan_patch_table_gives_one_patch_cell_per_chosen_model_after_its_training(tmp_path: Path) -> None:
    plan = parse_plan({**BASE, "patch": {**PATCH, "params": {"steps": 2}, "placements": 2}})
    cells = plan.cells(store=tmp_path / "store")
    patches = [c for c in cells if c.kind == "patch"]
    train = next(c for c in cells if c.kind == "defense-train" and c.model == "digits/lenet5-standard")
    assert [c.model for c in patches] == ["digits/lenet5-standard"] and patches[0].after == (train.ref,)
    assert cells.index(train) < cells.index(patches[0])
    params = patches[0].params
    assert params["sizes"] == [0.2, 0.5] and params["targets"] == [UNTARGETED, 3] and patches[0].n == 12
    assert params["train_n"] == 40 and params["placements"] == 2 and params["attack_params"] == {"steps": 2}
    # the defaults: every model, sizes 0.05 / 0.1 / 0.2, untargeted, the plan's n, 10,000 training images
    cells = [c for c in parse_plan({**BASE, "patch": {}}).cells(store=tmp_path / "store") if c.kind == "patch"]
    assert [c.model for c in cells] == ["digits/lenet5-standard", "digits/mlp-standard"]
    assert cells[0].params["sizes"] == [0.05, 0.1, 0.2] and cells[0].params["targets"] == [UNTARGETED]
    assert cells[0].n == 20 and cells[0].params["train_n"] == 10_000 and cells[0].params["placements"] == 1
    every = parse_plan({**BASE, "patch": {"targets": "all"}}).cells(store=tmp_path / "store")
    assert next(c for c in every if c.kind == "patch").params["targets"] == list(range(10))


def test_an_unknown_patch_key_is_one_error_naming_the_accepted_keys() -> None:
    accepted = ", ".join(sorted(PLAN_SCHEMA["patch"]))
    with pytest.raises(
        RbcError, match=rf"unknown \[patch\] key 'sizez' \(did you mean 'sizes'\?\); accepted: {accepted}$"
    ):
        parse_plan({**BASE, "patch": {"sizez": [0.1]}})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"targets": ["x"]}, r'invalid target \'x\': use "none" \(untargeted\), a class such as 3, or "all"'),
        ({"sizes": 0.1}, r"\[patch\] sizes must be a list"),
        ({"sizes": [0.0]}, "invalid patch size 0"),
        ({"sizes": [1.5]}, "invalid patch area"),
        ({"params": {"stepz": 3}}, "invalid parameter.s. stepz for attack 'patch'"),
        ({"models": ["lenet5-pgd-at"]}, r"\[patch\] models \['lenet5-pgd-at'\] are not models of the plan"),
        ({"n": 0}, r"\[patch\] n must be a whole number"),
        ({"train_n": 0}, r"\[patch\] train_n must be a whole number >= 1"),
        ({"placements": 0}, r"\[patch\] placements must be a whole number >= 1"),
    ],
)
def test_bad_patch_settings_fail_when_the_plan_is_parsed(bad: dict, message: str) -> None:
    with pytest.raises(RbcError, match=message):
        parse_plan({**BASE, "patch": bad})


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"targets": [10]},
            'for dataset digits: [patch] targets: invalid target 10: use "none" (untargeted), a class 0 to 9',
        ),
        ({"sizes": [0.01]}, "[patch] size 0.01 covers not one pixel of a 8 x 8 image: use at least 1/64"),
    ],
)
def test_a_class_or_size_the_dataset_lacks_is_one_line_before_any_training(
    store: Path, tmp_path: Path, bad: dict, message: str
) -> None:
    key = next(iter(bad))
    line = next(line for line in PATCH_TOML.splitlines() if line.startswith(f"{key} ="))
    plan = tmp_path / "bad.toml"
    plan.write_text(TINY + PATCH_TOML.replace(line, f"{key} = {bad[key]}"))
    result = CliRunner().invoke(main, ["--threads", "1", "benchmark", "--plan", str(plan), "-o", str(tmp_path / "r")])
    assert_one_line_error(result, message)
    assert not (store / "checkpoints").exists()  # nothing trained


def test_a_plan_with_patch_runs_into_patch_parquet_and_the_board(store: Path, tmp_path: Path) -> None:
    plan = tmp_path / "tiny.toml"
    plan.write_text(TINY + PATCH_TOML)
    out = tmp_path / "run"
    args = ["--threads", "1", "benchmark", "--plan", str(plan), "-o", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (store / "checkpoints" / "digits" / "lenet5-standard").is_dir()  # trained by the plan, before its patch cell
    table = pd.read_parquet(out / "patch.parquet")
    assert sorted(zip(table["area"], table["target"])) == [(0.2, -1), (0.2, 3), (0.5, -1), (0.5, 3)]
    assert (table["model"] == "digits/lenet5-standard").all() and (table["n"] == 12).all()
    assert (table["train_n"] == 40).all() and sorted(table["side"]) == [3, 3, 5, 5]  # floor(sqrt(area * 64))
    assert len(pd.read_parquet(out / "patch_samples.parquet")) == 4 * 12
    board = (out / "leaderboard.md").read_text()
    assert "## Adversarial patches" in board and "success % at patch:0.5 [95% CI]" in board


def test_the_mnist_plan_runs_the_measured_patches_on_every_model(tmp_path: Path) -> None:
    mnist = load_plan("mnist")
    cells = [c for c in mnist.cells(store=tmp_path / "store") if c.kind == "patch"]
    assert len(cells) == len(mnist.models)
    for cell in cells:  # the settings of docs/patches.md
        assert cell.params["sizes"] == [0.05, 0.1, 0.2] and cell.params["targets"] == [UNTARGETED, 3]
        assert cell.n == 1000 and cell.params["train_n"] == 10_000
