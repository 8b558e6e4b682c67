"""``rbc``: the command line of robustbench-cnn. This entry point only assembles the command modules of
:mod:`robustbench_cnn.commands`; each command parses its options, calls the library and prints.

Errors caused by input (unknown names, bad epsilons, missing data, bad checkpoints, shape mismatches)
are printed as one line and exit with code 2; they never show a traceback.
"""

from __future__ import annotations

import click

from robustbench_cnn.commands import (
    attack_list,
    benchmark,
    blackbox,
    certify,
    data,
    defend,
    detect,
    evaluate,
    explain,
    models,
    patch,
    report,
    train,
)
from robustbench_cnn.commands.errors import RbcGroup
from robustbench_cnn.commands.options import root_options


@click.group(cls=RbcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="robustbench-cnn")
@root_options
def main() -> None:
    """robustbench-cnn: train CNNs, attack them, defend them, and trust the robust accuracy you get.

    The shared options (--threads, --device, --store, --data-dir, --out, --seed, --progress/--no-progress) go
    before or after the subcommand; given in both places, the subcommand's value wins. Attack, defense and
    architecture parameters are -p/--param KEY=VALUE in every command.
    """


for command in (
    data.data,
    models.models,
    train.train,
    defend.defend_command,
    defend.tradeoff_command,
    evaluate.attack,
    evaluate.evaluate,
    certify.certify_command,
    explain.explain_command,
    patch.patch_command,
    detect.detect_command,
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
