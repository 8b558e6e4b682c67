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
    from rich.table import Table

    from robustbench_cnn.core.types import format_eps

    rows = report.table if show_all else report.changed()
    table = Table(title=f"regression check against the baseline (tolerance {report.tolerance_pp:g} pp)")
    for col in (
        "status",
        "model",
        "dataset",
        "cascade",
        "attack",
        "norm",
        "eps",
        "target",
        "clean %",
        "Δ clean",
        "robust %",
        "Δ robust",
        "note",
    ):
        table.add_column(
            col, justify="right" if col in ("eps", "clean %", "Δ clean", "robust %", "Δ robust") else "left"
        )

    def pct(base: float, cur: float) -> str:
        fmt = lambda v: "-" if v != v else f"{100 * v:.1f}"  # noqa: E731  (NaN -> "-")
        return f"{fmt(base)} -> {fmt(cur)}"

    def delta(v: float) -> str:
        return "" if v != v else f"{v:+.1f}"

    for row in rows.to_dict("records"):
        status = str(row["status"])
        target = str(row["target_policy"]) if row["targeted"] else "-"
        table.add_row(
            f"[{_STYLE[status]}]{status}[/]" if _STYLE[status] else status,
            str(row["model"]),
            str(row["dataset"]),
            str(row["cascade"]),
            str(row["attack"]),
            str(row["norm"]),
            format_eps(float(row["eps"])),
            target,
            pct(row["baseline_clean_acc"], row["current_clean_acc"]),
            delta(row["delta_clean_pp"]),
            pct(row["baseline_robust_acc"], row["current_robust_acc"]),
            delta(row["delta_robust_pp"]),
            str(row["note"] or ""),
        )
    return table


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
    "--update",
    is_flag=True,
    default=False,
    help="Write the current summary as the new baseline (shows the diff, exits 0).",
)
@click.option("--all", "show_all", is_flag=True, default=False, help="List every cell, not only the changed ones.")
def regress_command(baseline: str, current: str, tolerance_pp: float, update: bool, show_all: bool) -> None:
    """Compare a run's results with a baseline, cell by cell: exit 1 when a cell's clean or robust accuracy
    dropped by more than --tolerance-pp, a baseline cell is missing or was evaluated on another number of points,
    else 0 (2: unreadable input)."""
    from robustbench_cnn.reporting.regress import compare, load_baseline, load_current, refresh_baseline

    cur = load_current(current)
    if update:
        done = refresh_baseline(cur, baseline, tolerance_pp)
        if done.unreadable:
            click.echo(f"replacing the unreadable baseline: {done.unreadable}", err=True)
        if done.previous is not None:
            if len(done.previous.changed()) or show_all:
                out.print(_diff_table(done.previous, show_all))
            out.print(f"against the previous baseline: {done.previous.counts_text()}")
        out.print(f"baseline written to {done.path} ({done.cells} cells)")
        return
    report = compare(load_baseline(baseline), cur, tolerance_pp)
    if len(report.changed()) or show_all:
        out.print(_diff_table(report, show_all))
    out.print(report.summary_line())
    if report.exit_code:
        click.get_current_context().exit(report.exit_code)


__all__ = ["regress_command", "report_command"]
