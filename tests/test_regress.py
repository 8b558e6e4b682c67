"""The CI regression check: statuses cell by cell, exit codes, malformed baselines, --update."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from report_fixtures import cell_rows, summary, three_models, write_run

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.reporting.regress import KEY, compare, load_baseline, update_baseline


def _base() -> pd.DataFrame:
    return summary(*three_models())


def _where(
    frame: pd.DataFrame, model: str, attack: str = "worst-case", eps: float = 0.3, norm: str = "linf"
) -> pd.Series:
    return (frame["model"] == model) & (frame["attack"] == attack) & (frame["eps"] == eps) & (frame["norm"] == norm)


def _status(report, model: str, attack: str = "worst-case", eps: float = 0.3) -> str:
    t = report.table
    return str(t[_where(t, model, attack, eps)]["status"].iloc[0])


# ------------------------------------------------------------------------------------------ compare


def test_identical_tables_pass() -> None:
    report = compare(_base(), _base())
    assert report.exit_code == 0 and report.counts["ok"] == len(_base())
    assert set(report.table.columns) >= set(KEY) | {"status", "delta_robust_pp", "delta_clean_pp"}


def test_drop_beyond_tolerance_regresses() -> None:
    current = _base()
    current.loc[_where(current, "digits/b-pgd-at"), "robust_acc"] -= 0.05  # -5 pp
    report = compare(_base(), current, tolerance_pp=1.0)
    assert report.exit_code == 1 and report.counts["regressed"] == 1
    assert _status(report, "digits/b-pgd-at") == "regressed"
    row = report.changed().iloc[0]
    assert row["delta_robust_pp"] == pytest.approx(-5.0) and row["status"] == "regressed"  # worst first
    assert "FAILED" in report.summary_line()


def test_clean_accuracy_drop_regresses() -> None:
    current = _base()
    current.loc[current["model"] == "digits/a-standard", "clean_acc"] -= 0.02
    report = compare(_base(), current)
    assert report.exit_code == 1 and _status(report, "digits/a-standard") == "regressed"


@pytest.mark.parametrize("delta_pp", [-0.5, -1.0, +0.9, +1.0])
def test_changes_within_tolerance_pass(delta_pp: float) -> None:
    current = _base()
    current.loc[_where(current, "digits/b-pgd-at"), "robust_acc"] += delta_pp / 100
    report = compare(_base(), current, tolerance_pp=1.0)
    assert report.exit_code == 0 and _status(report, "digits/b-pgd-at") == "ok"


def test_rise_beyond_tolerance_is_improved_and_passes() -> None:
    current = _base()
    current.loc[_where(current, "digits/c-standard"), "robust_acc"] += 0.03
    report = compare(_base(), current)
    assert report.exit_code == 0 and _status(report, "digits/c-standard") == "improved"


def test_missing_cell_fails_and_new_cell_passes() -> None:
    base = _base()
    dropped = base[~_where(base, "digits/a-standard", "fgsm", 0.1)]
    report = compare(base, dropped)
    assert report.exit_code == 1 and report.counts["missing"] == 1
    assert _status(report, "digits/a-standard", "fgsm", 0.1) == "missing"
    grown = summary(*three_models(), cell_rows("digits/new", 0.9, {0.3: 0.2}))
    report = compare(base, grown)
    assert report.exit_code == 0 and report.counts["new"] == 3  # pgd, fgsm, worst-case


def test_a_cell_on_another_number_of_points_fails_as_resized() -> None:
    """The same accuracies on 10 points instead of 1,000 are not the baseline's cell: it used to pass with a note."""
    current = _base()
    current.loc[_where(current, "digits/b-pgd-at"), "n"] = 10
    report = compare(_base(), current)
    assert report.exit_code == 1 and report.counts["resized"] == 1
    assert _status(report, "digits/b-pgd-at") == "resized"
    row = report.table[report.table["status"] == "resized"].iloc[0]
    assert row["note"] == "n 100 -> 10"


def test_nan_current_value_regresses() -> None:
    current = _base()
    current.loc[_where(current, "digits/a-standard"), "robust_acc"] = float("nan")
    assert compare(_base(), current).exit_code == 1


def test_key_separates_targeted_cells_and_matches_equal_epsilons() -> None:
    untargeted = summary(cell_rows("m", 0.9, {8 / 255: 0.5}, attacks=["pgd"]))
    targeted = summary(cell_rows("m", 0.9, {8 / 255: 0.1}, attacks=["pgd"], targeted=True, target_policy="next"))
    report = compare(untargeted, pd.concat([untargeted, targeted], ignore_index=True))
    assert report.exit_code == 0 and report.counts["ok"] == 1 and report.counts["new"] == 1
    same = summary(cell_rows("m", 0.9, {0.03137254901960784: 0.5}, attacks=["pgd"]))
    assert compare(untargeted, same).counts["ok"] == 1


# ------------------------------------------------------------------------------------------ loading


def test_load_baseline_errors(tmp_path: Path) -> None:
    text = tmp_path / "baseline.parquet"
    text.write_text("model,robust_acc\nx,0.5\n")
    with pytest.raises(RbcError, match=r"baseline .* is not a readable parquet file"):
        load_baseline(text)
    with pytest.raises(RbcError, match="does not exist"):
        load_baseline(tmp_path / "none.parquet")
    lacking = tmp_path / "lacking.parquet"
    _base().drop(columns=["robust_acc", "eps"]).to_parquet(lacking)
    with pytest.raises(RbcError, match="lacks the columns eps, robust_acc"):
        load_baseline(lacking)
    wrong = tmp_path / "wrong.parquet"
    _base().astype({"eps": "string", "robust_acc": "string"}).to_parquet(wrong)
    with pytest.raises(RbcError, match=r"wrong type: eps \(string, expected a number\)"):
        load_baseline(wrong)
    dup = tmp_path / "dup.parquet"
    pd.concat([_base(), _base()]).to_parquet(dup)
    with pytest.raises(RbcError, match="rows for the same cells"):
        load_baseline(dup)


def test_update_baseline_roundtrip(tmp_path: Path) -> None:
    path = update_baseline(_base(), tmp_path / "sub" / "baseline.parquet")
    loaded = load_baseline(path)
    assert len(loaded) == len(_base()) and compare(loaded, _base()).exit_code == 0
    assert not list(path.parent.glob(".*tmp"))  # atomic: no temporary file left behind


# ------------------------------------------------------------------------------------------ CLI


def _run(*args: str):
    from robustbench_cnn.commands.report import regress_command

    return CliRunner().invoke(regress_command, list(args))


def _one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and pattern in lines[0], result.stderr


def test_cli_own_baseline_passes(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    result = _run("--baseline", str(run / "summary.parquet"), "--current", str(run))
    assert result.exit_code == 0, result.output
    assert "regression check passed" in result.stdout


def test_cli_planted_drop_fails_with_a_diff_table(tmp_path: Path) -> None:
    baseline = write_run(tmp_path / "base", *three_models())
    cells = three_models()
    cells[1] = cell_rows("digits/b-pgd-at", 0.90, {0: 0.90, 0.1: 0.7, 0.3: 0.45}, defense="pgd-at")  # -15 pp
    current = write_run(tmp_path / "cur", *cells)
    result = _run("--baseline", str(baseline / "summary.parquet"), "--current", str(current))
    assert result.exit_code == 1, result.output
    assert "regressed" in result.stdout and "digits/b-pgd-at" in result.stdout and "-15.0" in result.stdout
    assert "regression check FAILED" in result.stdout
    loose = _run("--baseline", str(baseline / "summary.parquet"), "--current", str(current), "--tolerance-pp", "15")
    assert loose.exit_code == 0, loose.output


def test_cli_missing_cell_fails(tmp_path: Path) -> None:
    baseline = write_run(tmp_path / "base", *three_models())
    current = write_run(tmp_path / "cur", *three_models()[:3])  # the l2 cell is gone
    result = _run("--baseline", str(baseline), "--current", str(current))
    assert result.exit_code == 1 and "missing" in result.stdout


def test_cli_malformed_baseline_exits_2(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    text = tmp_path / "baseline.parquet"
    text.write_text("not parquet at all\n")
    _one_line_error(_run("--baseline", str(text), "--current", str(run)), "is not a readable parquet file")
    lacking = tmp_path / "lacking.parquet"
    pd.DataFrame({"model": ["x"], "robust_acc": [0.5]}).to_parquet(lacking)
    _one_line_error(_run("--baseline", str(lacking), "--current", str(run)), "lacks the columns")
    _one_line_error(_run("--baseline", str(tmp_path / "nope.parquet"), "--current", str(run)), "does not exist")


def test_cli_update_writes_a_baseline_that_then_passes(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    baseline = tmp_path / "results" / "baseline.parquet"
    baseline.parent.mkdir()
    baseline.write_text("malformed")  # --update repairs a malformed baseline
    result = _run("--baseline", str(baseline), "--current", str(run), "--update")
    assert result.exit_code == 0, result.output
    assert "baseline written to" in result.stdout
    again = _run("--baseline", str(baseline), "--current", str(run))
    assert again.exit_code == 0 and "passed" in again.stdout
