"""``rbc attack`` (one attack over a robustness curve) and ``rbc evaluate`` (a cascade, per-sample worst case).

Both parse their options and call :func:`robustbench_cnn.pipeline.workflows.evaluate_model`, then print.
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import (
    eval_options,
    parse_kv,
)
from robustbench_cnn.commands.output import out, show_summary, table


def note_capped(requested: int | None, evaluated: int, dataset: str) -> bool:
    """One yellow ``Note:`` line on stderr when ``-n requested`` was more than the test split holds (the run
    evaluated all ``evaluated`` images); returns whether it printed."""
    if requested is None or evaluated <= 0 or evaluated >= requested:
        return False
    click.secho(
        f"Note: -n {requested} is more than the {dataset} test split holds: evaluated all {evaluated} images",
        fg="yellow",
        err=True,
    )
    return True


def _run_evaluation(cascade: str, attack_params: dict[str, Any], options: dict[str, Any]) -> None:
    """Call the evaluate workflow with the shared options and print what it returns."""
    from robustbench_cnn.evaluation.target_matrix import wide_rows
    from robustbench_cnn.pipeline.workflows import evaluate_model

    model_def, weights = options["model_def"], options["weights"]
    requested, dataset = options["n"], options["dataset"]
    result = evaluate_model(
        options.pop("model"), cascade=cascade, attack_params=attack_params, out=options.pop("out"), **options
    )
    if result.corruptions is not None:  # a corruption threat: accuracy per corruption and severity, and the mean
        cols = ["model", "benchmark", "corruption", "severity", "n", "clean_accuracy", "accuracy"]
        out.print(table("accuracy under common corruptions", result.corruptions.to_dict("records"), cols))
        out.print(f"results in {result.run_dir / 'corruptions.parquet'}")
        return
    if result.target_matrix is not None:
        for eps in sorted(result.target_matrix["eps"].unique()):
            out.print(
                table(
                    f"targeted success %, true class x target class ({result.attack}, {result.norm}:{eps:g})",
                    wide_rows(result.target_matrix, float(eps)),
                )
            )
        out.print(f"results in {result.run_dir / 'target_matrix.parquet'}")
        return
    show_summary(result.summary)
    if len(result.summary):
        note_capped(requested, int(result.summary["n"].max()), dataset)
    if model_def and not weights:  # after the run, so that an input error stays the one line it is
        click.secho(
            "Warning: no --weights: the factory's model was evaluated as it builds it (untrained unless it "
            "loads its own weights)",
            fg="yellow",
            err=True,
        )
    out.print(f"results in {result.run_dir}")
    if result.recorded:
        out.print(
            "recorded the cascade's robust accuracy in the model card (rbc tradeoff): "
            + ", ".join(f"{k} {v:.4f}" for k, v in result.recorded.items())
            + f" (n={int(result.summary['n'].max())})"
        )


@click.command(cls=RbcCommand)
@click.option("--attack", "-a", default="pgd", show_default=True, help="Registered attack (rbc attacks list).")
@click.option("--param", "-p", multiple=True, help="Attack parameter KEY=VALUE (e.g. steps=100).")
@eval_options
def attack(attack: str, param: tuple[str, ...], **kwargs: Any) -> None:
    """Run one attack over a list of epsilons (a robustness curve) and write the results tables."""
    from robustbench_cnn.attacks import ATTACKS, get_attack

    name = ATTACKS.get(attack).registry_name
    params = parse_kv(param, "--param")
    if params:
        get_attack(name, **params)  # unknown parameters fail before any work
    _run_evaluation(name, params, kwargs)


@click.command(cls=RbcCommand)
@click.option(
    "--cascade",
    "-c",
    default=None,
    help="Attack cascade: fast (AutoAttack strength at a fraction of its time) | quick | standard (AutoAttack "
    "standard + PGD) | plus, or comma-separated attack names [default: fast].",
)
@click.option("--suite", "-s", "suite", default=None, help="Deprecated name of --cascade.")
@eval_options
def evaluate(cascade: str | None, suite: str | None, **kwargs: Any) -> None:
    """Worst case per sample over a cascade of attacks, for each epsilon."""
    from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE, check_attack_names

    if suite is not None:
        if cascade is not None:
            raise ValueError("give --cascade only (--suite is its deprecated name)")
        click.echo("note: --suite/-s is deprecated, use --cascade/-c", err=True)
        cascade = suite
    cascade = cascade or DEFAULT_CASCADE
    check_attack_names(cascade)  # unknown names suggest cascades and attacks (-c quik -> quick)
    _run_evaluation(cascade, {}, kwargs)
