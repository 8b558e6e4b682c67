"""``rbc patch``: universal adversarial patches against one model, success rate per patch size and target class.

It parses its options, calls :func:`robustbench_cnn.pipeline.workflows.patch_model`, writes the success-against-area
curve and the learned patches as PNGs into the run folder
(:func:`robustbench_cnn.reporting.patch_figures.write_patch_figures`) and prints the curve and, with several
targets and sizes, the per-target-class table.
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import common_options, dataset_option, out_option, param_option, parse_kv
from robustbench_cnn.commands.output import out, table


@click.command("patch", cls=RbcCommand)
@click.option("--model", "-m", "model", default=None, help="Checkpoint name (rbc models list) or path.")
@click.option("--model-def", default=None, help="Bring your own model: path/to/file.py:factory.")
@click.option("--weights", default=None, help="With --model-def: a .safetensors (or weights-only .pt).")
@dataset_option
@click.option(
    "--threat",
    "-t",
    default="patch:0.1",
    show_default=True,
    help="patch:AREA, the fraction of the image the square patch covers (or patch with --sizes).",
)
@click.option("--sizes", default=None, help="Comma-separated patch areas for the curve, e.g. 0.05,0.1,0.2.")
@click.option(
    "--target",
    default="none",
    show_default=True,
    help="none (untargeted), a target class such as 3, all (every class), or a mix such as none,3.",
)
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Test images (seeded subset).")
@click.option("--train-n", type=int, default=10_000, show_default=True, help="Training images the patch is learned on.")
@click.option("--placements", type=int, default=1, show_default=True, help="Random positions per test image.")
@param_option("patch attack (steps, lr, batch, eot_samples, rotation, scale, brightness, contrast, noise, loss)")
@click.option("--batch-size", type=int, default=256, show_default=True)
@out_option()
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@common_options
def patch_command(model: str | None, param: tuple[str, ...], **kwargs: Any) -> None:
    """Learn universal adversarial patches (Brown et al. 2017, with expectation over transformation) on training
    images and measure their success on test images at random positions, per patch size and target class."""
    from robustbench_cnn.pipeline.workflows import patch_model
    from robustbench_cnn.reporting.patch_figures import curve_rows, target_rows, write_patch_figures

    result = patch_model(model, attack_params=parse_kv(param, "--param"), **kwargs)
    figures = write_patch_figures(result.run_dir, result.table)
    out.print(
        table("universal patch: success % [95% CI] per patch size (lower is more robust)", curve_rows(result.table))
    )
    if result.table["target"].nunique() > 1 and result.table["area"].nunique() > 1:
        out.print(table("success % per target class and patch size", target_rows(result.table)))
    out.print(
        f"results in {result.run_dir} (patch.parquet, patch_samples.parquet, {', '.join(f.name for f in figures)})"
    )
