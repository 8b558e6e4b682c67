"""Resuming continues the same request only: a folder with cells of another request (other n, eps, weights) is
refused instead of mixed, the tables hold only the plan's cells, and a retrained model is a new cell."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.types import parse_eps
from robustbench_cnn.pipeline.cells import Cell, whitebox_cell
from robustbench_cnn.pipeline.plan import parse_plan
from robustbench_cnn.pipeline.runner import pin_weights, run_cells
from robustbench_cnn.tables.results import RunStore


@pytest.fixture()
def digits_model(store):
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=3), progress=False)
    return "digits/lenet5-standard"


def _cell(model: str, n: int = 30, eps: list[float] | None = None) -> Cell:
    return whitebox_cell(model, "digits", "linf", eps or [0.1], "fgsm", n=n)


def test_resuming_with_a_different_request_is_refused_and_keeps_the_old_cells(digits_model, tmp_path) -> None:
    out = tmp_path / "run"
    first = run_cells([_cell(digits_model, n=20)], out, progress=False)
    before = first.summary()
    for changed in (_cell(digits_model, n=30), _cell(digits_model, n=20, eps=[0.1, 0.2])):
        with pytest.raises(RbcError, match="different request"):
            run_cells([changed], out, resume=True, progress=False)
    again = RunStore(out)
    pd.testing.assert_frame_equal(again.summary(), before)  # nothing lost, nothing added
    assert len(pd.read_parquet(out / "summary.parquet")) == len(before)
    # the same request resumes (nothing to do) and a superset of it too
    run_cells([_cell(digits_model, n=20)], out, resume=True, progress=False)
    both = run_cells(
        [_cell(digits_model, n=20), _cell(digits_model, n=20, eps=[0.2])], out, resume=True, progress=False
    )
    assert sorted(both.summary()["eps"].tolist()) == [0.1, 0.2]


def test_tables_are_rebuilt_from_the_planned_cells_only(digits_model, tmp_path) -> None:
    run = run_cells([_cell(digits_model, n=20)], tmp_path / "run", progress=False)
    stray = run.cells_dir / "stray-000000000000.summary.parquet"
    shutil.copy(next(run.cells_dir.glob("*.summary.parquet")), stray)
    planned = [pin_weights(_cell(digits_model, n=20)).id]
    run.finalize(planned)
    assert len(pd.read_parquet(run.dir / "summary.parquet")) == 1
    assert len(run.summary()) == 2  # without a plan every finished cell is read (rbc report on a folder)


def test_a_retrained_model_is_a_new_cell(digits_model, tmp_path) -> None:
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    first = pin_weights(_cell(digits_model))
    assert len(first.weights_sha256) == 64
    train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=1, seed=1), progress=False)
    second = pin_weights(_cell(digits_model))
    assert second.weights_sha256 != first.weights_sha256 and second.id != first.id


def test_resume_needs_the_folder_it_continues(digits_model) -> None:
    with pytest.raises(RbcError, match="--resume needs the run folder"):
        run_cells([_cell(digits_model)], None, resume=True, progress=False)


def test_substitute_training_is_seeded_whatever_the_global_rng(digits_model) -> None:
    from robustbench_cnn.attacks.blackbox.substitute import train_substitute
    from robustbench_cnn.store import load_checkpoint

    target = load_checkpoint(digits_model, None, "cpu")[0]
    histories = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever ran before in the process
        sub = train_substitute(
            target, "digits", "mlp", seed_size=40, rounds=2, budget=200, epochs_per_round=2, seed=0, save=False
        )
        histories.append(sub.history.drop(columns="seconds"))
    pd.testing.assert_frame_equal(histories[0], histories[1])


@pytest.mark.parametrize(
    "proxy,match",
    [
        ({"budgte": 400}, "unknown \\[proxy\\] key"),
        ({"target": "lenet5-standrd"}, "not a model of the plan"),
    ],
)
def test_proxy_settings_are_checked_before_any_work(proxy, match) -> None:
    with pytest.raises(RbcError, match=match):
        parse_plan({"models": [{"arch": "lenet5"}, {"arch": "mlp"}], "proxy": proxy})
    parse_plan(
        {
            "models": [{"arch": "lenet5"}, {"arch": "mlp"}],
            "proxy": {"target": "mlp-standard", "budget": 400, "rounds": 2},
        }
    )


def test_a_zero_denominator_epsilon_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="division by zero"):
        parse_eps("8/0")


def test_an_out_path_that_cannot_be_a_run_folder_is_a_clear_error(digits_model, tmp_path) -> None:
    from click.testing import CliRunner

    from cli import main

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(RbcError, match="is an existing file"):
        run_cells([_cell(digits_model)], afile, progress=False)
    with pytest.raises(RbcError, match="cannot create run folder"):
        run_cells([_cell(digits_model)], afile / "inside", progress=False)
    result = CliRunner().invoke(
        main,
        ["evaluate", "-m", digits_model, "-c", "fgsm", "--eps", "0.1", "-n", "10", "-o", str(afile), "--no-progress"],
    )
    assert result.exit_code == 2 and "is an existing file" in result.output
    assert "Traceback" not in result.output and afile.read_text() == "not a folder"


def test_an_edited_model_file_is_a_new_cell(tmp_path) -> None:
    """A bring-your-own model is its file and its weights: editing the file and resuming used to reuse the cells
    computed with the old code."""
    from safetensors.torch import save_file
    from torch import nn

    model_file = tmp_path / "mine.py"
    model_file.write_text(
        "from torch import nn\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
    )
    save_file(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), str(tmp_path / "w.safetensors"))
    cell = whitebox_cell(
        "mine",
        "digits",
        "linf",
        [0.1],
        "fgsm",
        n=20,
        model_def=f"{model_file}:build",
        weights=str(tmp_path / "w.safetensors"),
    )
    run_cells([cell], tmp_path / "run", progress=False)
    model_file.write_text(model_file.read_text().replace("Linear(64, 10))", "Linear(64, 10), nn.Tanh())"))
    with pytest.raises(RbcError, match="different request"):
        run_cells([cell], tmp_path / "run", resume=True, progress=False)
