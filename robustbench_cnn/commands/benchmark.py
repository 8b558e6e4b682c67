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
from robustbench_cnn.commands.output import out, show_summary


@click.command(cls=RbcCommand)
@click.option(
    "--suite",
    "-s",
    "suite_name",
    default="default",
    show_default=True,
    help="A built-in suite (default, ci, mnist, cifar10) or a path to a suite .toml file.",
)
@click.option("--out", "-o", "out_dir", default=None, help="Run folder (default results/<suite>-<timestamp>).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster (default: start a local one).")
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write leaderboard.md/.html.")
@compose(
    data_dir_option,
    store_option,
    device_option,
    click.option("--seed", type=int, default=None, help="Random seed (default: the suite's seed)."),
    progress_option,
)
def benchmark(
    suite_name: str,
    out_dir: str | None,
    executor: str,
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
    from robustbench_cnn.pipeline.benchmark import run_benchmark
    from robustbench_cnn.pipeline.plan import load_suite

    resolve_device(device)
    suite = load_suite(suite_name)
    if seed is not None:  # --seed 0 overrides a suite's non-zero seed too
        suite.seed = seed
    result = run_benchmark(
        suite,
        out_dir,
        resume=resume,
        executor=executor,
        ray_address=ray_address,
        store=store,
        data_dir=data_dir,
        device=device,
        progress=progress,
        report=report,
    )
    summary = result.summary
    if len(summary):
        largest = summary[(summary["attack"].isin(["worst-case"])) | (summary["suite"] == summary["attack"])]
        show_summary(largest if len(largest) else summary)
    out.print(
        f"benchmark {suite.name}: {len(result.trained)} model(s) trained, {len(summary)} rows, "
        f"{result.seconds:.1f} s; results in {result.run_dir}"
    )
    if result.report:
        out.print(f"report: {result.report[0]} and {result.report[1]}")
