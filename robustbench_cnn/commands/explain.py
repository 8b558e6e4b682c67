"""``rbc explain``: what the network looks at before and after an attack.

It parses its options, calls :func:`robustbench_cnn.pipeline.explain_run.explain_models` (one ``explain`` cell per
model), writes the PNG grid of each model (:func:`robustbench_cnn.reporting.explain_grid.write_explain_grids`) and
prints the attribution shift per model and method.
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import ATTACK_NORMS_HELP, common_options, dataset_option, out_option, parse_kv
from robustbench_cnn.commands.output import out, table


def shift_rows(summary: Any) -> list[dict[str, Any]]:
    """The printed rows of a shift summary (:func:`robustbench_cnn.evaluation.explain.shift_summary`)."""

    def num(value: float) -> str:
        return "" if value != value else f"{value:.2f}"  # NaN -> empty

    return [
        {
            "model": rec["model"],
            "method": rec["method"],
            "attacked": rec["attacked"],
            "broken": rec["broken"],
            "median Spearman": num(rec["median_spearman"]),
            f"median top-{rec['k']} ∩": num(rec["median_top_k"]),
        }
        for rec in summary.to_dict("records")
    ]


@click.command("explain", cls=RbcCommand)
@click.option(
    "--model",
    "-m",
    "model",
    default=None,
    help="Checkpoint name (rbc models list) or path; comma-separated for several.",
)
@dataset_option
@click.option("--attack", "-a", default="pgd", show_default=True, help="Registered attack (rbc attacks list).")
@click.option("--param", "-p", multiple=True, metavar="KEY=VALUE", help="Attack parameter KEY=VALUE (e.g. steps=40).")
@click.option(
    "--threat",
    "-t",
    default="linf:0.3",
    show_default=True,
    help=f"NORM:EPS, e.g. linf:0.3. Norms: {ATTACK_NORMS_HELP}.",
)
@click.option(
    "--target",
    "target_policy",
    default=None,
    help="Targeted attack with this target policy: random | least-likely | next | class:K (default: untargeted).",
)
@click.option(
    "--methods",
    default="saliency,integrated-gradients,occlusion,gradcam",
    show_default=True,
    help="Comma-separated attribution methods.",
)
@click.option("-n", "n", type=int, default=8, show_default=True, help="Test images (seeded subset).")
@click.option(
    "--top-k", "top_k_fraction", type=float, default=0.1, show_default=True, help="Top-k as a fraction of the pixels."
)
@click.option("--ig-steps", type=int, default=50, show_default=True, help="Integrated Gradients steps.")
@click.option("--grid-rows", type=int, default=8, show_default=True, help="Points shown in the PNG grid.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@out_option()
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@common_options
def explain_command(
    model: str | None, param: tuple[str, ...], top_k_fraction: float, ig_steps: int, **kwargs: Any
) -> None:
    """Attribution maps (saliency, Integrated Gradients, occlusion, Grad-CAM) of the clean vs the adversarial
    prediction, the attribution shift per point, and a PNG grid per model."""
    from robustbench_cnn.pipeline.explain_run import explain_models
    from robustbench_cnn.reporting.explain_grid import write_explain_grids

    config = {"top_k_fraction": top_k_fraction, "ig_steps": ig_steps}
    result = explain_models(model or "", attack_params=parse_kv(param, "--param"), config=config, **kwargs)
    out.print(
        table(
            "attribution shift between the clean and the adversarial prediction (attacked points)",
            shift_rows(result.summary),
        )
    )
    for path in write_explain_grids(result.run_dir):
        out.print(f"grid: {path}")
    out.print(f"results in {result.run_dir}")
