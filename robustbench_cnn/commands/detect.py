"""``rbc detect``: detection defenses guarding a model, evaluated non-adaptively and adaptively.

It parses its options, calls :func:`robustbench_cnn.pipeline.detection_workflow.detect_model` and prints, per
detector and epsilon, the clean FPR, the non-adaptive attacks' TPR / ROC-AUC and detection-robust accuracy (marked
non-adaptive) and the adaptive attack's detection-robust accuracy (the figure that counts).
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import common_options, dataset_option, out_option, param_option, parse_kv
from robustbench_cnn.commands.output import out, table


def detection_rows(frame: Any) -> list[dict[str, Any]]:
    """The printed rows of a ``detection`` table: one per detector x eps x attack."""
    from robustbench_cnn.core.statistics import format_ci

    rows = []
    for rec in frame.to_dict("records"):
        rows.append(
            {
                "model": rec["model"],
                "detector": rec["detector"],
                "eps": f"{rec['eps']:g}",
                "attack": rec["attack"] if rec["adaptive"] else f"{rec['attack']} (non-adaptive)",
                "clean %": f"{100 * rec['clean_acc']:.1f}",
                "FPR %": f"{100 * rec['clean_fpr']:.1f}",
                "TPR %": "" if rec["tpr"] != rec["tpr"] else f"{100 * rec['tpr']:.1f}",
                "AUC": "" if rec["auc"] != rec["auc"] else f"{rec['auc']:.3f}",
                "robust %": format_ci(rec["robust_acc"], rec["robust_ci_low"], rec["robust_ci_high"]),
            }
        )
    return rows


@click.command("detect", cls=RbcCommand)
@click.option("--model", "-m", "model", default=None, help="Checkpoint name (rbc models list) or path.")
@click.option(
    "--detector",
    "detectors",
    multiple=True,
    required=True,
    help="Detector name, repeatable or comma-separated (feature-squeezing, learned, mahalanobis, or all).",
)
@param_option("detector")
@dataset_option
@click.option("--threat", "-t", default="linf", show_default=True, help="Norm (linf or l2), or NORM:EPS.")
@click.option("--eps", "-e", default=None, help="Comma-separated epsilons, e.g. 0.1,0.3.")
@click.option("-n", "n", type=int, default=500, show_default=True, help="Test images evaluated (seeded subset).")
@click.option(
    "--attacks", default="fgsm,pgd", show_default=True, help="Non-adaptive attacks on the classifier alone (names)."
)
@click.option("--adaptive-steps", type=int, default=100, show_default=True, help="Steps of the adaptive attack.")
@click.option("--adaptive-restarts", type=int, default=1, show_default=True, help="Restarts of the adaptive attack.")
@click.option("--fpr", type=float, default=0.05, show_default=True, help="False positive rate of the calibration.")
@click.option("--fit-n", type=int, default=2000, show_default=True, help="Training points the detectors learn from.")
@click.option(
    "--calibration-n", type=int, default=1000, show_default=True, help="Clean held-out test points for calibration."
)
@click.option("--batch-size", type=int, default=500, show_default=True)
@out_option()
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@common_options
def detect_command(model: str | None, detectors: tuple[str, ...], param: tuple[str, ...], **kwargs: Any) -> None:
    """Detection defenses guarding a model: clean FPR, non-adaptive TPR/AUC, and robust accuracy under an adaptive
    attack that must fool the classifier and evade the detector together."""
    from robustbench_cnn.core.statistics import PLUS_MINUS
    from robustbench_cnn.evaluation.detection import DEFINITION
    from robustbench_cnn.pipeline.detection_workflow import detect_model

    result = detect_model(model or "", detectors=detectors, params=parse_kv(param), **kwargs)
    out.print(
        table(
            f"detection: percent {PLUS_MINUS}; {DEFINITION}",
            detection_rows(result.table),
        )
    )
    out.print(f"results in {result.run_dir}")
