"""Cell kinds and the one runner: every registered kind runs through run_cells, resumes, and waits for the cells
it depends on; a plan expands into cells; the deprecated plan/cascade names still work, with a note."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from cli_helpers import assert_one_line_error
from click.testing import CliRunner

from cli import main
from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.pipeline.cells import (
    CELL_KINDS,
    Cell,
    certify_cell,
    corruptions_cell,
    defense_train_cell,
    detection_cell,
    explain_cell,
    minimal_norm_cell,
    patch_cell,
    proxy_train_cell,
    target_matrix_cell,
    transfer_cell,
    transfer_matrix_cell,
    whitebox_cell,
)
from robustbench_cnn.pipeline.runner import pin_weights, run_cells
from robustbench_cnn.tables.results import comparable

KINDS = [
    "certify",
    "corruptions",
    "defense-train",
    "detection",
    "explain",
    "minimal-norm",
    "patch",
    "proxy-train",
    "target-matrix",
    "transfer",
    "transfer-matrix",
    "whitebox",
]


@pytest.fixture()
def two_models(store):
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    for arch in ("lenet5", "mlp"):
        train_model(arch, "digits", TrainConfig.for_dataset("digits", epochs=2), progress=False)
    return "digits/lenet5-standard", "digits/mlp-standard"


def test_every_cell_kind_is_registered_once() -> None:
    assert CELL_KINDS.list() == KINDS
    with pytest.raises(ValueError, match="registered twice"):
        CELL_KINDS.register("whitebox")(type("Again", (), {}))


def test_a_cell_pickles_and_its_id_is_what_defines_its_result() -> None:
    cell = whitebox_cell("digits/lenet5-standard", "digits", "linf", [0.1, 0.0], "quick", n=20)
    again = pickle.loads(pickle.dumps(cell))
    assert again == cell and again.id == cell.id and cell.params["eps"] == [0.0, 0.1]
    how = whitebox_cell("digits/lenet5-standard", "digits", "linf", [0, 0.1], "quick", n=20, device="cpu")
    how.batch_size, how.store = 7, "/elsewhere"
    assert how.id == cell.id  # device, batch size and paths do not define the result
    for other in (
        whitebox_cell("digits/lenet5-standard", "digits", "linf", [0, 0.1], "quick", n=30),
        whitebox_cell("digits/lenet5-standard", "digits", "linf", [0, 0.1], "quick", n=20, seed=1),
        whitebox_cell("digits/lenet5-standard", "digits", "linf", [0, 0.1], "pgd", n=20),
        cell.pinned("abc"),
    ):
        assert other.id != cell.id
    assert cell.pinned("abc").ref == cell.ref  # the ref is the id before the pin: what `after` names


def _all_kinds(models: tuple[str, str]) -> list[Cell]:
    """One small cell of every kind on the digits models (the proxy's substitute feeds the transfer)."""
    lenet, mlp = models
    train = defense_train_cell("digits/fastcnn-standard", "digits", "fastcnn", epochs=1)
    proxy = proxy_train_cell(lenet, "digits", "mlp", options={"seed_size": 40, "rounds": 2, "budget": 100})
    return [
        train,
        whitebox_cell("digits/fastcnn-standard", "digits", "linf", [0, 0.1], "fgsm", n=20, after=(train.ref,)),
        target_matrix_cell(mlp, "digits", "linf", [0.1], "fgsm", n=20),
        proxy,
        transfer_cell(
            ["digits/mlp-substitute-of-lenet5-standard"], lenet, "digits", "linf", [0.1], n=20, after=(proxy.ref,)
        ),
        transfer_matrix_cell([lenet, mlp], "digits", "linf:0.1", n=20),
    ]


def _issue21_kinds(models: tuple[str, str]) -> list[Cell]:
    """One small cell of each of issue 21's kinds (certify, corruptions, minimal-norm), and issue 19's patch, on a digits
    model."""
    lenet, _ = models
    return [
        certify_cell(lenet, "digits", sigma=0.25, radii=[0, 0.25], n=5, n0=10, noise_samples=50, attack_steps=1,
                     attack_noise_samples=1),
        corruptions_cell(lenet, "digits", "corruption:fog:3", n=20),
        minimal_norm_cell(lenet, "digits", "l2", [0.5, 1.0], "fmn", attack_params={"steps": 5}, growing_ball="fgsm",
                          n=10),
        explain_cell(lenet, "digits", "linf:0.3", "fgsm", config={"ig_steps": 4}, n=3),  # issue 19's kind
        patch_cell(lenet, "digits", [0.2], [-1, 3], attack_params={"steps": 2, "batch": 8}, train_n=40, n=10),
    ]  # fmt: skip


def test_every_kind_runs_through_the_runner_and_resumes(two_models, store, tmp_path) -> None:
    cells = _all_kinds(two_models)
    # the contract covers every registered kind (issue 21's in the test below)
    assert sorted({c.kind for c in cells + _issue21_kinds(two_models) + _detection_kind(two_models)}) == KINDS
    ran: list[str] = []
    run = run_cells(cells, tmp_path / "run", progress=False, on_cell=lambda done: ran.append(done.cell.kind))
    assert ran == [c.kind for c in cells]  # locally: in order, each after what it waits for
    assert (store / "checkpoints" / "digits" / "fastcnn-standard" / "card.json").exists()
    summary = run.summary()
    assert set(summary["attack_kind"]) == {"white-box", "transfer"}
    assert set(summary.loc[summary["attack_kind"] == "transfer", "cascade"]) == {"transfer"}
    assert (
        summary.loc[summary["attack_kind"] == "transfer", "source"] == "digits/mlp-substitute-of-lenet5-standard"
    ).all()
    for name, rows in (("target_matrix", 10 * 9), ("transfer_matrix", 4), ("history", 2)):
        table = pd.read_parquet(run.dir / f"{name}.parquet")
        assert len(table) == rows and table["run_id"].eq(run.run_id).all(), name
    again: list[str] = []
    run_cells(cells, tmp_path / "run", resume=True, progress=False, on_cell=lambda done: again.append(done.cell.kind))
    assert again == []  # everything was finished (the model and the substitute are in the store)
    pd.testing.assert_frame_equal(comparable(run.summary()), comparable(summary))


def test_issue21_kinds_run_through_the_runner_and_resume(two_models, store, tmp_path) -> None:
    cells = _issue21_kinds(two_models)
    ran: list[str] = []
    run = run_cells(cells, tmp_path / "run", progress=False, on_cell=lambda done: ran.append(done.cell.kind))
    assert ran == [c.kind for c in cells]
    tables = (("certify", 2), ("certify_samples", 5), ("corruptions", 2), ("minimal_norm", 2), ("patch", 2))
    for name, rows in (*tables, ("patch_samples", 2 * 10)):
        table = pd.read_parquet(run.dir / f"{name}.parquet")
        assert len(table) == rows and table["run_id"].eq(run.run_id).all(), name
    summary = run.summary()
    assert set(summary["attack"]) == {"fmn", "growing-ball", "worst-case"}  # only minimal-norm writes attack rows
    again: list[str] = []
    run_cells(cells, tmp_path / "run", resume=True, progress=False, on_cell=lambda done: again.append(done.cell.kind))
    assert again == []


def test_a_run_killed_after_training_resumes_to_the_rows_of_an_uninterrupted_one(store, tmp_path) -> None:
    """The dependent cell's id is pinned to the weights its dependency trained, only once they exist."""
    train = defense_train_cell("digits/lenet5-standard", "digits", "lenet5", epochs=1)
    cells = [
        train,
        whitebox_cell("digits/lenet5-standard", "digits", "linf", [0, 0.1], "fgsm", n=30, after=(train.ref,)),
    ]

    class Killed(Exception):
        pass

    def kill(done) -> None:
        if done.cell.kind == "defense-train":
            raise Killed

    with pytest.raises(Killed):
        run_cells(cells, tmp_path / "cut", progress=False, on_cell=kill)
    assert not list((tmp_path / "cut" / "cells").glob("*.summary.parquet"))
    resumed = run_cells(cells, tmp_path / "cut", resume=True, progress=False)
    full = run_cells(cells, tmp_path / "full", progress=False)  # the model is in the store: it only evaluates
    assert len(resumed.summary()) == len(full.summary()) == 2
    pd.testing.assert_frame_equal(comparable(resumed.summary()), comparable(full.summary()))
    assert resumed.summary()["cell_id"].iloc[0] == pin_weights(cells[1]).id


def test_an_unknown_dependency_or_a_cell_listed_twice_is_refused_before_any_work(tmp_path) -> None:
    cell = whitebox_cell("digits/lenet5-standard", "digits", "linf", [0.1], "fgsm", n=10, after=("nope-123",))
    with pytest.raises(ValueError, match="waits for nope-123, which is not an earlier cell"):
        run_cells([cell], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    twice = whitebox_cell("digits/lenet5-standard", "digits", "linf", [0.1], "fgsm", n=10)
    with pytest.raises(ValueError, match="is listed twice"):
        run_cells([twice, twice], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_plan_expands_into_cells_that_wait_for_their_training(store) -> None:
    from robustbench_cnn.pipeline.plan import load_plan

    plan = load_plan("default")
    cells = plan.cells()
    by_kind = pd.Series([c.kind for c in cells]).value_counts().to_dict()
    models = len(plan.models)
    assert by_kind == {
        "defense-train": models,
        "whitebox": 2 * models,
        "proxy-train": 1,
        "transfer": models,
        "transfer-matrix": 1,
    }
    refs = {c.ref: c for c in cells}
    for i, cell in enumerate(cells):
        assert all(ref in refs and cells.index(refs[ref]) < i for ref in cell.after)
        if cell.kind == "whitebox":
            assert [refs[r].model for r in cell.after] == [cell.model]  # waits for its own model's training
    proxy = next(c for c in cells if c.kind == "proxy-train")
    assert proxy.model == "digits/lenet5-standard" and proxy.params["substitute"] == "fastcnn"
    assert all(proxy.ref in c.after for c in cells if c.kind == "transfer")
    assert {c.params["cascade"] for c in cells if c.kind == "transfer"} == {"proxy:lenet5-standard"}


def test_the_deprecated_suite_names_still_work_with_a_note(capsys) -> None:
    from robustbench_cnn.pipeline.plan import Suite, load_suite, parse_plan

    plan = parse_plan({"models": [{"arch": "lenet5"}], "whitebox": {"suite": "fgsm"}}, "old.toml")
    assert plan.cascade == "fgsm" and isinstance(plan, Suite)
    assert "old.toml: [whitebox] suite = ... is deprecated, write cascade" in capsys.readouterr().err
    assert load_suite("ci").name == "ci"
    with pytest.raises(RbcError, match="both cascade and its deprecated name suite"):
        parse_plan({"models": [{"arch": "lenet5"}], "whitebox": {"suite": "fgsm", "cascade": "pgd"}})


def test_the_deprecated_cli_aliases_print_a_note(two_models, tmp_path, monkeypatch) -> None:
    import types

    import robustbench_cnn.pipeline.benchmark as benchmark_mod

    lenet, _ = two_models
    args = ["-m", lenet, "--eps", "0.1", "-n", "10", "--no-progress", "--device", "cpu"]
    old = CliRunner().invoke(main, ["evaluate", "-s", "fgsm", *args, "-o", str(tmp_path / "old")])
    new = CliRunner().invoke(main, ["evaluate", "-c", "fgsm", *args, "-o", str(tmp_path / "new")])
    assert old.exit_code == new.exit_code == 0, old.output
    assert "--suite/-s is deprecated, use --cascade/-c" in old.stderr and "deprecated" not in new.stderr
    pd.testing.assert_frame_equal(
        comparable(pd.read_parquet(tmp_path / "old" / "summary.parquet")),
        comparable(pd.read_parquet(tmp_path / "new" / "summary.parquet")),
    )
    assert_one_line_error(
        CliRunner().invoke(main, ["evaluate", "-s", "fgsm", "-c", "pgd", *args]), "give --cascade only"
    )
    seen = {}

    def fake(plan, out_dir, **kwargs):
        seen["plan"] = plan.name
        return types.SimpleNamespace(summary=pd.DataFrame(), trained=[], seconds=0.0, run_dir=out_dir)

    monkeypatch.setattr(benchmark_mod, "run_benchmark", fake)
    result = CliRunner().invoke(main, ["benchmark", "--suite", "ci", "-o", str(tmp_path / "b"), "--no-report"])
    assert result.exit_code == 0 and seen["plan"] == "ci", result.output
    assert "--suite/-s is deprecated, use --plan" in result.stderr


def test_the_committed_baseline_with_a_suite_column_still_gates(tmp_path) -> None:
    from pathlib import Path

    from robustbench_cnn.reporting.regress import KEY, compare, load_baseline

    path = Path(__file__).resolve().parents[1] / "results" / "baseline.parquet"
    assert "suite" in pd.read_parquet(path).columns  # written before the rename
    baseline = load_baseline(path)
    assert "cascade" in KEY and set(baseline["cascade"]) == {"quick"}
    report = compare(baseline, baseline.rename(columns={"cascade": "suite"}))
    assert report.passed and report.counts["ok"] == len(baseline)


def _detection_kind(models: tuple[str, str]) -> list[Cell]:
    """One small ``detection`` cell (issue 19 part 2) on a digits model."""
    lenet, _ = models
    return [
        detection_cell(lenet, "digits", detectors=[("mahalanobis", {})], eps=[0.1], attacks=["fgsm"],
                       adaptive_steps=2, fit_n=100, calibration_n=50, n=10),
    ]  # fmt: skip


def test_detection_kind_runs_through_the_runner_and_resumes(two_models, store, tmp_path) -> None:
    cells = _detection_kind(two_models)
    run = run_cells(cells, tmp_path / "run", progress=False)
    for name, rows in (("detection", 2), ("detection_samples", 20)):
        table = pd.read_parquet(run.dir / f"{name}.parquet")
        assert len(table) == rows and table["run_id"].eq(run.run_id).all(), name
    again: list[str] = []
    run_cells(cells, tmp_path / "run", resume=True, progress=False, on_cell=lambda done: again.append(done.cell.kind))
    assert again == []


def test_the_substitute_note_is_printed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Five transfer cells share one substitute: its '-n reduced' note is printed once, the cap applies every time."""
    from types import SimpleNamespace

    from robustbench_cnn.core import progress
    from robustbench_cnn.pipeline.cells import transfer

    printed: list[str] = []
    monkeypatch.setattr(progress.console, "print", lambda message, *a, **k: printed.append(str(message)))
    card = SimpleNamespace(recipe="substitute", extra={"eval_max_n": 350}, dataset="digits", name="digits/sub-once")
    assert [transfer.disjoint_n(None, 450, [card], "digits") for _ in range(5)] == [350] * 5
    assert len(printed) == 1 and "reduced from 450 to 350" in printed[0]
