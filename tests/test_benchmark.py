"""Plans, the benchmark workflow, determinism, and a SIGKILL mid-run resumed without lost or duplicated rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.pipeline.plan import load_plan, parse_plan
from robustbench_cnn.tables.results import comparable, read_summary

TINY_PLAN = """
name = "tiny"
datasets = ["digits"]
n = 60
seed = 0
[threat]
norm = "linf"
eps = [0.0, 0.1]
[whitebox]
cascade = "fgsm"
[targeted]
attack = "fgsm"
policy = "next"
eps = [0.1]
[[models]]
arch = "lenet5"
epochs = 3
[[models]]
arch = "fastcnn"
epochs = 3
[[models]]
arch = "lenet5"
recipe = "fgsm-rs"
threat = "linf:0.1"
epochs = 2
"""


def write_plan(tmp_path: Path, text: str = TINY_PLAN) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_built_in_plans_parse() -> None:
    default = load_plan("default")
    assert default.datasets == ["digits"] and len({m.arch for m in default.models}) >= 3
    defended = {m.arch for m in default.models if m.recipe != "standard"}
    assert len(defended) >= 2 and all(m.threat for m in default.models if m.recipe != "standard")
    for name in ("ci", "mnist", "cifar10"):
        assert load_plan(name).models


def test_bad_plans_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(RbcError, match="unknown plan 'nope'"):
        load_plan("nope")
    with pytest.raises(RbcError, match="not valid TOML"):
        load_plan(str(write_plan(tmp_path, "name = [")))
    with pytest.raises(RbcError, match="needs threat"):
        parse_plan({"models": [{"arch": "lenet5", "recipe": "pgd-at"}]})
    with pytest.raises(RbcError, match="Did you mean: lenet5"):
        parse_plan({"models": [{"arch": "lenet"}]})
    with pytest.raises(RbcError, match="invalid epsilon"):
        parse_plan({"models": [{"arch": "lenet5"}], "threat": {"eps": [-0.1]}})
    twice = [{"arch": "lenet5", "recipe": "pgd-at", "threat": t} for t in ("linf:0.1", "linf:0.2")]
    with pytest.raises(RbcError, match=r"#1 and #2 are both <dataset>/lenet5-pgd-at: give one a tag"):
        parse_plan({"models": twice})  # one checkpoint name: the second would be evaluated as the first
    assert len(parse_plan({"models": [twice[0], {**twice[1], "tag": "eps02"}]}).models) == 2


def _rbc(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from cli import main; main()", "--threads", "1", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_benchmark_writes_tables_and_is_deterministic(tmp_path: Path, store) -> None:
    from robustbench_cnn.pipeline.benchmark import run_benchmark

    plan = load_plan(str(write_plan(tmp_path)))
    first = run_benchmark(plan, tmp_path / "a", progress=False)
    assert sorted(first.trained) == ["digits/fastcnn-standard", "digits/lenet5-fgsm-rs", "digits/lenet5-standard"]
    summary = read_summary(first.run_dir)
    # 3 models x (2 untargeted eps + 1 targeted eps), one attack each
    assert len(summary) == 9 and set(summary["targeted"]) == {True, False}
    assert (first.run_dir / "samples.parquet").exists() and (first.run_dir / "run.json").exists()
    second = run_benchmark(plan, tmp_path / "b", progress=False)
    assert second.trained == []  # models come from the store the second time
    pd.testing.assert_frame_equal(
        comparable(read_summary(second.run_dir)).drop(columns="cell_id"), comparable(summary).drop(columns="cell_id")
    )


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path: Path, store) -> None:
    env = {**os.environ, "RBC_HOME": str(store)}
    plan = write_plan(tmp_path)
    full = _rbc(
        "benchmark", "--plan", str(plan), "--out", str(tmp_path / "full"), "--no-report", "--no-progress", env=env
    )
    assert full.wait(timeout=600) == 0, full.stdout.read()
    # The models are in the store now, so the second run only evaluates: kill it after its first cell lands.
    killed = _rbc(
        "benchmark", "--plan", str(plan), "--out", str(tmp_path / "cut"), "--no-report", "--no-progress", env=env
    )
    cells = tmp_path / "cut" / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and not list(cells.glob("*.summary.parquet")):
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    finished = len(list(cells.glob("*.summary.parquet")))
    assert killed.returncode == -signal.SIGKILL and 1 <= finished < 6, finished
    refused = _rbc("benchmark", "--plan", str(plan), "--out", str(tmp_path / "cut"), "--no-progress", env=env)
    assert refused.wait(timeout=300) == 2 and "--resume" in refused.stdout.read()
    resumed = _rbc(
        "benchmark",
        "--plan",
        str(plan),
        "--out",
        str(tmp_path / "cut"),
        "--resume",
        "--no-report",
        "--no-progress",
        env=env,
    )
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    a, b = read_summary(tmp_path / "full"), read_summary(tmp_path / "cut")
    assert len(b) == len(a) == 9 and not b.duplicated(["cell_id", "attack", "eps"]).any()
    pd.testing.assert_frame_equal(comparable(a), comparable(b))
    assert len(pd.read_parquet(tmp_path / "cut" / "samples.parquet")) == len(
        pd.read_parquet(tmp_path / "full" / "samples.parquet")
    )


def test_a_stored_defended_model_at_another_threat_is_refused_not_evaluated(tmp_path: Path, store) -> None:
    """The store's digits/lenet5-fgsm-rs was trained at linf:0.2; a plan asking for linf:0.1 under the same
    name used to evaluate it silently as if it were the plan's model."""
    from robustbench_cnn.defenses import defend
    from robustbench_cnn.pipeline.benchmark import run_benchmark
    from robustbench_cnn.training import TrainConfig

    defend(
        "fgsm-rs",
        "lenet5",
        "digits",
        "linf:0.2",
        TrainConfig.for_dataset("digits", epochs=1),
        progress=False,
        eval_n=20,
        eval_steps=1,
    )
    fgsm_rs_only = TINY_PLAN.split("[[models]]")[0] + "[[models]]" + TINY_PLAN.split("[[models]]")[3]
    plan = load_plan(str(write_plan(tmp_path, fgsm_rs_only)))
    with pytest.raises(RbcError, match=r"trained at linf:0.2, the plan asks for linf:0.1: give the model a tag"):
        run_benchmark(plan, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "summary.parquet").exists()
