"""``rbc data list``: the datasets, their shapes and classes, and whether they are available locally."""

from __future__ import annotations

import click

from robustbench_cnn.commands.errors import RbcGroup
from robustbench_cnn.commands.options import (
    data_dir_option,
)
from robustbench_cnn.commands.output import out, table


@click.group(cls=RbcGroup)
def data() -> None:
    """Datasets."""


@data.command("list")
@data_dir_option
def data_list(data_dir: str | None) -> None:
    """Show each dataset, its shape, classes and whether it is available locally."""
    from robustbench_cnn.data import list_datasets

    out.print(table("datasets", list_datasets(data_dir)))
