"""``rbc benchmark``: run a benchmark plan (train what is missing, evaluate, write tables and the report)."""

from __future__ import annotations

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import (
    compose,
    data_dir_option,
    device_option,
    progress_option,
    store_option,
)
from robustbench_cnn.commands.output import SUMMARY_COLUMNS, out, show_summary


@click.command(cls=RbcCommand)
@click.option(
    "--plan",
    "plan_name",
    default=None,
    help="A built-in plan (default, ci, mnist, cifar10) or a path to a plan .toml file [default: default].",
)
@click.option("--suite", "-s", "suite_name", default=None, help="Deprecated name of --plan.")
@click.option("--out", "-o", "out_dir", default=None, help="Run folder (default results/<plan>-<timestamp>).")
@click.option(
    "--executor",
    type=click.Choice(["auto", "local", "processes", "ray"]),
    default="auto",
    show_default=True,
    help="auto: processes on a CPU with 2 or more cores and --threads (or --workers) allowing 2 or more, else "
    "local; local: one cell after another in this process; processes: cells in parallel worker processes "
    "(--workers); ray: cells as Ray tasks. The tables are the same whichever runs them.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (processes) or CPUs of the local cluster (ray) [default: the CPUs available]. "
    "The --threads torch threads are shared among them, at least one each.",
)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster (default: start a local one).")
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write leaderboard.md/.html.")
@compose(
    data_dir_option,
    store_option,
    device_option,
    click.option("--seed", type=int, default=None, help="Random seed (default: the plan's seed)."),
    progress_option,
)
def benchmark(
    plan_name: str | None,
    suite_name: str | None,
    out_dir: str | None,
    executor: str,
    workers: int | None,
    ray_address: str | None,
    resume: bool,
    report: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int | None,
    progress: bool,
) -> None:
    """Train what is missing, run the white-box, proxy and transfer attacks, write tables and report."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.pipeline import plan as plans
    from robustbench_cnn.pipeline.benchmark import run_benchmark

    if suite_name is not None:
        if plan_name is not None:
            raise ValueError("give --plan only (--suite is its deprecated name)")
        click.echo("note: --suite/-s is deprecated, use --plan", err=True)
        plan_name = suite_name
    resolve_device(device)
    plan = plans.load_plan(plan_name or "default")
    if seed is not None:  # --seed 0 overrides a plan's non-zero seed too
        plan.seed = seed
    result = run_benchmark(
        plan,
        out_dir,
        resume=resume,
        executor=executor,
        num_workers=workers,
        ray_address=ray_address,
        store=store,
        data_dir=data_dir,
        device=device,
        progress=progress,
    )
    summary = result.summary
    if len(summary):
        from robustbench_cnn.reporting.report import worst_case

        # one row per model x evaluation x eps: the cascade's worst case, a single attack's row, a transfer's row
        rows = worst_case(summary)
        order = rows.assign(_bb=rows["setting"] == "black-box")
        rows = rows.loc[order.sort_values(["_bb", "targeted", "target_policy", "model", "cascade", "eps"]).index]
        show_summary(
            rows, "worst case per model and eps", columns=[c.key for c in SUMMARY_COLUMNS if c.key != "attack"]
        )
    out.print(
        f"benchmark {plan.name}: {len(result.trained)} model(s) trained, {len(summary)} rows, "
        f"{result.seconds:.1f} s; results in {result.run_dir}"
    )
    if report:
        from robustbench_cnn.reporting.report import write_report

        paths = write_report(
            result.run_dir, store=store, eps={plan.norm: plan.report_eps} if plan.report_eps is not None else None
        )
        out.print(f"report: {paths[0]} and {paths[1]}")
