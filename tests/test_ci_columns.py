"""Every summary row carries the 95% Clopper-Pearson intervals of its clean and robust accuracy (the one row builder),
and tables written before the interval columns existed still load, with NaN there."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import cell_rows, summary, write_run

from robustbench_cnn.core.statistics import proportion_ci
from robustbench_cnn.tables.results import CI_COLUMNS, SUMMARY_SCHEMA, with_ci_columns
from robustbench_cnn.tables.rows import CellResult, accuracy_cis, run_metadata, summary_frame

CI = [c for pair in CI_COLUMNS.values() for c in pair]


def test_schema_has_the_interval_columns() -> None:
    assert set(CI) <= set(SUMMARY_SCHEMA) and all(SUMMARY_SCHEMA[c] == "Float64" for c in CI)


def test_row_builder_adds_the_intervals_of_both_accuracies_over_n() -> None:
    records = [
        {"attack": "pgd", "eps": 0.1, "n": 200, "clean_acc": 0.95, "robust_acc": 0.6, "success_rate": 0.3684},
        {"attack": "pgd", "eps": 0.3, "n": 200, "clean_acc": 0.95, "robust_acc": 0.0, "success_rate": 1.0},
        {"attack": "pgd", "eps": 0.0, "n": 10, "clean_acc": 1.0, "robust_acc": 1.0, "success_rate": 0.0},
    ]
    frame = summary_frame(CellResult(summary=records, model={"model": "m"}), run_metadata("run-x"))
    assert list(frame.columns) == list(SUMMARY_SCHEMA)
    for row, rec in zip(frame.to_dict("records"), records):
        for rate, (lo, hi) in CI_COLUMNS.items():
            k = round(rec[rate] * rec["n"])  # both accuracies are fractions of all n points
            assert (row[lo], row[hi]) == pytest.approx(proportion_ci(k, rec["n"]))
            assert row[lo] <= row[rate] <= row[hi]
    # 0 of 200 robust: the exact interval starts at 0 and is one-sided wide (1 - 0.025 ** (1/200))
    assert frame["robust_acc_lo"].iloc[1] == 0.0
    assert frame["robust_acc_hi"].iloc[1] == pytest.approx(1 - 0.025 ** (1 / 200))


def test_a_row_without_n_gets_nan_bounds() -> None:
    cis = accuracy_cis({"clean_acc": 0.9, "robust_acc": 0.5, "n": None})
    assert set(cis) == set(CI) and all(math.isnan(v) for v in cis.values())
    assert all(math.isnan(v) for v in accuracy_cis({"clean_acc": float("nan"), "n": 100}).values())


def test_old_tables_without_intervals_load_with_nan(tmp_path: Path) -> None:
    from robustbench_cnn.reporting.regress import compare, load_baseline
    from robustbench_cnn.reporting.report import write_report

    old = summary(cell_rows("digits/a", 0.9, {0.1: 0.5})).drop(columns=CI)
    assert with_ci_columns(old)[CI].isna().all().all() and with_ci_columns(with_ci_columns(old)).shape == (
        len(old),
        len(old.columns) + len(CI),
    )
    path = tmp_path / "old.parquet"
    old.to_parquet(path)
    loaded = load_baseline(path)
    assert loaded[CI].isna().all().all() and compare(loaded, loaded).exit_code == 0
    run = write_run(tmp_path / "run", cell_rows("digits/a", 0.9, {0.1: 0.5}))
    pd.read_parquet(run / "summary.parquet").drop(columns=CI).to_parquet(run / "summary.parquet")
    md, _ = write_report(run, store=tmp_path / "store")
    assert "90.0" in md.read_text()  # the figure without an interval
