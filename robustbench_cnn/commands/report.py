"""``rbc report`` and ``rbc regress``: the leaderboard of a run folder, and the CI regression check.

The commands only parse options, call :func:`robustbench_cnn.reporting.report.write_report` or
:mod:`robustbench_cnn.reporting.regress` (:func:`~robustbench_cnn.reporting.regress.compare`,
:func:`~robustbench_cnn.reporting.regress.refresh_baseline`) and print.
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import out_option, store_option
from robustbench_cnn.commands.output import out


def _parse_eps_options(values: tuple[str, ...]) -> dict[str, float]:
    from robustbench_cnn.core.types import ThreatModel

    chosen: dict[str, float] = {}
    for text in values:
        if ":" not in text:
            raise ValueError(f"invalid --eps {text!r}: use NORM:EPS, e.g. linf:8/255 or l2:0.5")
        threat = ThreatModel.parse_ball(text)
        chosen[threat.norm.value] = threat.eps
    return chosen


@click.command("report", cls=RbcCommand)
@click.argument("run_dir", type=click.Path(file_okay=False))
@out_option(
    "Where to write leaderboard.md/.html (default: the run folder).", dest="out_dir", type=click.Path(file_okay=False)
)
@click.option(
    "--eps",
    "eps",
    multiple=True,
    metavar="NORM:EPS",
    help="Rank at this epsilon for this norm (repeatable), e.g. linf:0.1; default: the largest "
    "epsilon every model of a board was evaluated at.",
)
@click.option(
    "--reference",
    type=click.Path(file_okay=False),
    default=None,
    help="A RobustBench model_info folder: its entries join the report as external reference rows.",
)
@click.option(
    "--robustbench-json",
    "robustbench_json",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write the run's results as RobustBench model_info entries under this folder.",
)
@store_option
def report_command(
    run_dir: str,
    out_dir: str | None,
    eps: tuple[str, ...],
    store: str | None,
    reference: str | None = None,
    robustbench_json: str | None = None,
) -> None:
    """Write the leaderboard of RUN_DIR: leaderboard.md and a self-contained leaderboard.html."""
    from robustbench_cnn.reporting.report import write_report

    md_path, html_path = write_report(run_dir, out_dir, store, eps=_parse_eps_options(eps), reference=reference)
    click.echo(str(md_path))
    click.echo(str(html_path))
    if robustbench_json:
        from robustbench_cnn.reporting.boards_extra import export_robustbench

        for path in export_robustbench(run_dir, robustbench_json, store):
            click.echo(str(path))


_STYLE = {
    "regressed": "bold red",
    "missing": "bold red",
    "resized": "bold red",
    "improved": "green",
    "new": "cyan",
    "ok": "",
}


def _diff_table(report: Any, show_all: bool) -> Any:
    from rich.text import Text

    from robustbench_cnn.commands.output import Col, fit_table
    from robustbench_cnn.core.types import format_eps

    rows = report.table if show_all else report.changed()
    records = rows.to_dict("records")

    def pct(base: float, cur: float) -> str:
        fmt = lambda v: "-" if v != v else f"{100 * v:.1f}"  # noqa: E731  (NaN -> "-")
        return f"{fmt(base)} -> {fmt(cur)}"

    def delta(v: float) -> str:
        return "" if v != v else f"{v:+.1f}"

    cells = []
    for row in records:
        status = str(row["status"])
        cells.append(
            {
                "status": Text(status, style=_STYLE[status]),
                "model": str(row["model"]),
                "dataset": str(row["dataset"]),
                "cascade": str(row["cascade"]),
                "attack": str(row["attack"]),
                "norm": str(row["norm"]),
                "eps": format_eps(float(row["eps"])),
                "target": str(row["target_policy"]) if row["targeted"] else "-",
                "clean": pct(row["baseline_clean_acc"], row["current_clean_acc"]),
                "d_clean": delta(row["delta_clean_pp"]),
                "robust": pct(row["baseline_robust_acc"], row["current_robust_acc"]),
                "d_robust": delta(row["delta_robust_pp"]),
                "note": str(row["note"] or ""),
            }
        )
    cols = [
        Col("status", "status"),
        Col("model", "model"),
        Col("dataset", "dataset", drop=2),
        Col("cascade", "cascade"),
        Col("attack", "attack"),
        Col("norm", "norm", drop=2),
        Col("eps", "eps", numeric=True),
        Col("target", "target", drop=1),
        Col("clean", "clean %", numeric=True, drop=3),
        Col("d_clean", "Δ clean", numeric=True),
        Col("robust", "robust %", numeric=True, drop=3),
        Col("d_robust", "Δ robust", numeric=True),
        Col("note", "note", flex=True, note=True),
    ]
    if report.mode == "paired":
        rule = f"paired McNemar, alpha {report.alpha:g} (Holm); tolerance {report.tolerance_pp:g} pp without samples"
    else:
        rule = f"tolerance {report.tolerance_pp:g} pp"
    title = f"regression check against the baseline ({rule})"
    return fit_table(title, cells, cols)


@click.command("regress", cls=RbcCommand)
@click.option(
    "--baseline",
    "-b",
    required=True,
    type=click.Path(dir_okay=True),
    help="Baseline summary table (e.g. results/baseline.parquet) or a run folder.",
)
@click.option(
    "--current",
    "-c",
    required=True,
    type=click.Path(dir_okay=True),
    help="The run folder (or summary.parquet) to check.",
)
@click.option(
    "--tolerance-pp",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Allowed change of clean or robust accuracy per cell, in percentage points.",
)
@click.option(
    "--mode",
    type=click.Choice(["tolerance", "paired"]),
    default="tolerance",
    show_default=True,
    help="tolerance: fail on a change beyond --tolerance-pp (exact reproducibility, e.g. CI with pinned numerics). "
    "paired: fail only on a significant paired drop (exact McNemar on the same points' per-sample outcomes, "
    "Holm-corrected; for runs where noise is expected); needs the per-sample tables (a run folder's "
    "samples.parquet, or <baseline>.samples.parquet written by --update); cells without them use the tolerance.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="--mode paired: family-wise significance level.",
)
@click.option(
    "--update",
    is_flag=True,
    default=False,
    help="Write the current summary as the new baseline (shows the diff, exits 0).",
)
@click.option("--all", "show_all", is_flag=True, default=False, help="List every cell, not only the changed ones.")
def regress_command(
    baseline: str, current: str, tolerance_pp: float, mode: str, alpha: float, update: bool, show_all: bool
) -> None:
    """Compare a run's results with a baseline, cell by cell: exit 1 when a cell's clean or robust accuracy
    dropped (by more than --tolerance-pp, or significantly with --mode paired), a baseline cell is missing or was
    evaluated on another number of points, else 0 (2: unreadable input)."""
    from robustbench_cnn.reporting.paired import samples_path
    from robustbench_cnn.reporting.regress import (
        compare,
        load_baseline,
        load_current,
        load_samples,
        refresh_baseline,
    )

    cur = load_current(current)
    if update:
        done = refresh_baseline(cur, baseline, tolerance_pp, load_samples(current))
        if done.unreadable:
            click.echo(f"replacing the unreadable baseline: {done.unreadable}", err=True)
        if done.previous is not None:
            if len(done.previous.changed()) or show_all:
                out.print(_diff_table(done.previous, show_all))
            out.print(f"against the previous baseline: {done.previous.counts_text()}")
        kept = samples_path(done.path)
        with_samples = f", per-sample outcomes in {kept.name}" if kept.exists() else ", no per-sample table"
        out.print(f"baseline written to {done.path} ({done.cells} cells{with_samples})")
        return
    base = load_baseline(baseline)
    samples = {}
    if mode == "paired":
        for what, path in (("baseline", baseline), ("current results", current)):
            samples[what] = load_samples(path)
            if samples[what] is None:
                click.echo(
                    f"note: no per-sample table for the {what} ({samples_path(path)}): its cells use the tolerance "
                    "rule",
                    err=True,
                )
    report = compare(
        base,
        cur,
        tolerance_pp,
        mode=mode,
        baseline_samples=samples.get("baseline"),
        current_samples=samples.get("current results"),
        alpha=alpha,
    )
    if len(report.changed()) or show_all:
        out.print(_diff_table(report, show_all))
    if report.fallback:
        out.print(f"{report.fallback} cell(s) had no paired samples and were checked by the tolerance rule")
    out.print(report.summary_line())
    if report.exit_code:
        click.get_current_context().exit(report.exit_code)


__all__ = ["regress_command", "report_command"]
