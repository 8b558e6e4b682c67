"""``rbc certify``: randomized smoothing of one model, certified accuracy beside attacked accuracy per L2 radius.

It parses its options, calls :func:`robustbench_cnn.pipeline.workflows.certify_model` and prints, per radius, the
certified accuracy (a lower bound on the smoothed classifier's robust accuracy) beside the empirical accuracy under
SmoothAdv (an upper bound) and their gap.
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import common_options, dataset_option, out_option
from robustbench_cnn.commands.output import out, table


def certify_rows(frame: Any) -> list[dict[str, Any]]:
    """The printed rows of a ``certify`` table: certified <= empirical side by side, the gap and the flags."""
    from robustbench_cnn.core.statistics import format_ci

    rows = []
    for rec in frame.to_dict("records"):
        rows.append(
            {
                "model": rec["model"],
                "sigma": f"{rec['sigma']:g}",
                "radius": f"{rec['radius']:g}",
                "certified %": format_ci(rec["certified_acc"], rec["certified_ci_low"], rec["certified_ci_high"]),
                "<=": "<=" if rec["certified_acc"] <= rec["empirical_acc"] else "NOT <=",
                "empirical %": format_ci(rec["empirical_acc"], rec["empirical_ci_low"], rec["empirical_ci_high"]),
                "gap pp": f"{100 * rec['gap']:.1f}",
                "inconsistent": f"{rec['inconsistent']} (allowed {rec['inconsistent_allowed']})",
                "flags": rec["flags"] or "",
            }
        )
    return rows


@click.command("certify", cls=RbcCommand)
@click.option("--model", "-m", "model", default=None, help="Checkpoint name (rbc models list) or path.")
@dataset_option
@click.option("--sigma", type=float, required=True, help="Gaussian noise level of the smoothed classifier.")
@click.option(
    "--radii", default="0,0.25,0.5,0.75", show_default=True, help="Comma-separated L2 radii to certify and attack."
)
@click.option("-n", "n", type=int, default=100, show_default=True, help="Test images (seeded subset).")
@click.option("--n0", type=int, default=100, show_default=True, help="Noise samples to select the top class.")
@click.option(
    "--noise-samples", type=int, default=10_000, show_default=True, help="Noise samples to estimate pA (CERTIFY's n)."
)
@click.option("--alpha", type=float, default=0.001, show_default=True, help="Failure probability of a certificate.")
@click.option("--attack-steps", type=int, default=20, show_default=True, help="SmoothAdv PGD steps per radius.")
@click.option("--attack-noise-samples", type=int, default=16, show_default=True, help="SmoothAdv noise draws per step.")
@click.option("--batch-size", type=int, default=1000, show_default=True)
@out_option()
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@common_options
def certify_command(model: str | None, **kwargs: Any) -> None:
    """Certify (lower bound) and attack (upper bound) a model's Gaussian-smoothed classifier per L2 radius."""
    from robustbench_cnn.core.statistics import PLUS_MINUS
    from robustbench_cnn.pipeline.workflows import certify_model

    result = certify_model(model or "", **kwargs)
    out.print(
        table(
            f"smoothed classifier: certified (lower bound) <= empirical (upper bound), percent {PLUS_MINUS}",
            certify_rows(result.table),
        )
    )
    flagged = result.table[result.table["flags"].fillna("") != ""]
    for rec in flagged.to_dict("records"):
        click.secho(f"Warning: radius {rec['radius']:g}: {rec['flags']}", fg="yellow", err=True)
    out.print(f"results in {result.run_dir}")
