"""The CI regression check: statuses cell by cell, exit codes, malformed baselines, --update, and the paired
(McNemar) mode on constructed per-sample tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from report_fixtures import cell_rows, paired_cell, summary, three_models, write_run

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.reporting.regress import (
    KEY,
    compare,
    load_baseline,
    load_current,
    load_samples,
    update_baseline,
)


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


# ------------------------------------------------------------------------------------------ paired mode

N_POINTS = 200


def _outcomes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clean-correct (95%) and robust (about 60%) outcomes of N_POINTS points, seeded."""
    rng = np.random.default_rng(seed)
    clean = rng.random(N_POINTS) < 0.95
    return clean, clean & (rng.random(N_POINTS) < 0.63)


def _flip(robust: np.ndarray, clean: np.ndarray, lost: int, gained: int) -> np.ndarray:
    """``robust`` with ``lost`` robust points broken and ``gained`` broken (but clean-correct) points made robust."""
    out = robust.copy()
    out[np.flatnonzero(robust)[:lost]] = False
    out[np.flatnonzero(clean & ~robust)[:gained]] = True
    return out


def _paired_runs(tmp_path: Path, lost: int, gained: int, *, with_samples: bool = True) -> tuple[Path, Path]:
    clean, robust = _outcomes()
    other_clean, other_robust = _outcomes(1)
    base = [
        paired_cell("digits/m", clean, {0.1: robust}),
        paired_cell("digits/other", other_clean, {0.1: other_robust}),
    ]
    cur = [
        paired_cell("digits/m", clean, {0.1: _flip(robust, clean, lost, gained)}),
        paired_cell("digits/other", other_clean, {0.1: other_robust}),
    ]

    def write(name: str, cells: list) -> Path:
        samples = [s for _, s in cells] if with_samples else None
        return write_run(tmp_path / name, *[rows for rows, _ in cells], samples=samples)

    return write("base", base), write("cur", cur)


def _paired(base: Path, cur: Path, **kw):
    return compare(
        load_baseline(base),
        load_current(cur),
        mode="paired",
        baseline_samples=load_samples(base),
        current_samples=load_samples(cur),
        **kw,
    )


def test_paired_mode_passes_noise_that_the_tolerance_rule_fails(tmp_path: Path) -> None:
    """5 points lost and 2 gained: -1.5 pp, beyond a 1 pp tolerance, but McNemar p = 0.45 (5 of 7 discordant)."""
    base, cur = _paired_runs(tmp_path, lost=5, gained=2)
    assert compare(load_baseline(base), load_current(cur), tolerance_pp=1.0).exit_code == 1
    report = _paired(base, cur)
    assert report.exit_code == 0 and report.counts["ok"] == 2 and report.fallback == 0 and report.tests == 1
    row = report.table[report.table["model"] == "digits/m"].iloc[0]
    assert row["rule"] == "paired" and row["delta_robust_pp"] == pytest.approx(-1.5)
    assert row["p_robust"] == pytest.approx(0.453125)  # two-sided binomial: P(X <= 2 or X >= 5), X ~ Bin(7, 1/2)
    assert "5 lost, 2 gained" in row["note"]


def test_paired_mode_fails_a_real_drop(tmp_path: Path) -> None:
    """20 points lost, 1 gained (-9.5 pp): p = 2 * P(X <= 1 | Bin(21, 1/2)) ~ 2e-5, significant after Holm."""
    base, cur = _paired_runs(tmp_path, lost=20, gained=1)
    report = _paired(base, cur)
    assert report.exit_code == 1 and report.counts["regressed"] == 1
    row = report.changed().iloc[0]
    assert row["model"] == "digits/m" and row["status"] == "regressed" and row["p_robust"] < 1e-4
    assert "paired McNemar" in report.summary_line()


def test_paired_mode_a_significant_rise_is_improved(tmp_path: Path) -> None:
    base, cur = _paired_runs(tmp_path, lost=0, gained=15)
    report = _paired(base, cur)
    assert report.exit_code == 0 and report.counts["improved"] == 1


def test_paired_mode_without_samples_falls_back_to_the_tolerance_rule(tmp_path: Path) -> None:
    base, cur = _paired_runs(tmp_path, lost=5, gained=2, with_samples=False)
    report = _paired(base, cur)
    assert report.fallback == 2 and report.tests == 0
    assert report.exit_code == 1  # -1.5 pp by the 1 pp tolerance, as in tolerance mode
    assert (report.table["rule"] == "tolerance").all()
    assert report.table["note"].str.contains("no paired samples .*tolerance rule").all()


def test_paired_mode_refuses_to_pair_other_points(tmp_path: Path) -> None:
    """The same accuracies on other sample ids are not paired outcomes: the cell falls back and says why."""
    clean, robust = _outcomes()
    rows, samples = paired_cell("digits/m", clean, {0.1: robust})
    base = write_run(tmp_path / "base", rows, samples=[samples])
    moved = paired_cell("digits/m", clean, {0.1: robust}, sample_ids=np.arange(N_POINTS) + 1000)
    cur = write_run(tmp_path / "cur", moved[0], samples=[moved[1]])
    report = _paired(base, cur)
    assert report.fallback == 1 and "not over the same points" in report.table["note"].iloc[0]


def test_holm_step_down() -> None:
    from robustbench_cnn.reporting.regress import _holm

    # sorted 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops: only the first is significant
    assert _holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert _holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]  # 0.001 <= .05/3, .02 <= .05/2, .04 <= .05
    assert _holm([], 0.05) == []


def test_cli_paired_mode_with_a_baseline_written_by_update(tmp_path: Path) -> None:
    base, noisy = _paired_runs(tmp_path / "noise", lost=5, gained=2)
    _, dropped = _paired_runs(tmp_path / "drop", lost=20, gained=1)
    baseline = tmp_path / "results" / "baseline.parquet"
    written = _run("--baseline", str(baseline), "--current", str(base), "--update")
    assert written.exit_code == 0 and (tmp_path / "results" / "baseline.samples.parquet").is_file(), written.output
    assert "baseline.samples.parquet" in written.stdout
    noise = _run("--baseline", str(baseline), "--current", str(noisy), "--mode", "paired")
    assert noise.exit_code == 0 and "regression check passed" in noise.stdout, noise.output
    assert _run("--baseline", str(baseline), "--current", str(noisy)).exit_code == 1  # tolerance: the default
    drop = _run("--baseline", str(baseline), "--current", str(dropped), "--mode", "paired")
    assert drop.exit_code == 1 and "regressed" in drop.stdout and "digits/m" in drop.stdout, drop.output
    # a baseline summary without its per-sample table: every cell by the tolerance rule, and the CLI says so
    (tmp_path / "results" / "baseline.samples.parquet").unlink()
    bare = _run("--baseline", str(baseline), "--current", str(noisy), "--mode", "paired")
    assert bare.exit_code == 1 and "no per-sample table for the baseline" in bare.stderr
    assert "2 cell(s) had no paired samples" in bare.stdout


def test_update_without_samples_removes_a_stale_sibling(tmp_path: Path) -> None:
    path = tmp_path / "baseline.parquet"
    sibling = tmp_path / "baseline.samples.parquet"
    sibling.write_bytes(b"old")
    update_baseline(_base(), path)
    assert path.is_file() and not sibling.exists()


def test_cli_diff_table_at_80_columns_keeps_figures_and_notes_whole(tmp_path: Path) -> None:
    base, cur = _paired_runs(tmp_path, lost=20, gained=1)
    from robustbench_cnn.commands.report import regress_command

    args = ["-b", str(base), "-c", str(cur), "--mode", "paired", "--all"]
    result = CliRunner().invoke(regress_command, args, terminal_width=80)
    assert result.exit_code == 1, result.output
    text = result.stdout
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text, text
    assert "│ regressed │ digits/m" in text and "-9.5" in text  # status and delta on one line, unfolded
    assert "- regressed digits/m pgd pgd 0.1: robust: 20 lost, 1 gained" in text  # the note, under the table
