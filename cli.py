"""``rbc``: the command line of robustbench-cnn. This entry point only assembles the command modules of
:mod:`robustbench_cnn.commands`; each command parses its options, calls the library and prints.

Errors caused by input (unknown names, bad epsilons, missing data, bad checkpoints, shape mismatches)
are printed as one line and exit with code 2; they never show a traceback.
"""

from __future__ import annotations

import click

from robustbench_cnn.commands import attack_list, benchmark, blackbox, data, defend, evaluate, models, report, train
from robustbench_cnn.commands.errors import RbcGroup


@click.group(cls=RbcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="robustbench-cnn")
@click.option(
    "--threads",
    type=int,
    envvar="RBC_THREADS",
    default=None,
    help="CPU threads for torch (default: torch's choice; env RBC_THREADS). Use 1 on a busy machine.",
)
def main(threads: int | None) -> None:
    """robustbench-cnn: train CNNs, attack them, defend them, and trust the robust accuracy you get."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"invalid --threads {threads}: must be >= 1")
        import torch

        torch.set_num_threads(threads)


for command in (
    data.data,
    models.models,
    train.train,
    defend.defend_command,
    defend.tradeoff_command,
    evaluate.attack,
    evaluate.evaluate,
    attack_list.attacks_group,
    blackbox.proxy_group,
    blackbox.transfer_command,
    blackbox.transfer_matrix_command,
    benchmark.benchmark,
    report.report_command,
    report.regress_command,
):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
