"""Options accepted before and after the subcommand: ``rbc --store S train ...`` is ``rbc train ... --store S``.

The root group's shared options (``--threads``, ``--device``, ``--store``, ``--data-dir``, ``--out``, ``--seed``,
``--progress/--no-progress``) only record what the user gave (on the command line, or ``RBC_THREADS``) in
``ctx.meta``. A command (:class:`~robustbench_cnn.commands.errors.RbcCommand`) takes those values as the defaults
of its own options of the same spelling (click's ``default_map``), so:

- a value given after the subcommand wins over one given before it;
- one given before it is the command's value, whatever the option's destination name (``--out`` is ``out`` in
  ``rbc attack`` and ``out_dir`` in ``rbc report``);
- one given before a command that has no such option is an input error (one line, exit code 2), never
  silently dropped.

``--threads`` is an option of every command: it sets torch's CPU threads when the command runs (never for
``--help``, so that ``rbc --help`` imports no torch).
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

#: ``ctx.meta`` key of ``{"--store": value, ...}``: the shared options given before the subcommand.
ROOT_VALUES = "robustbench_cnn.root_options"
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def long_flag(param: click.Parameter) -> str:
    """The option's first long spelling (``--out`` for ``-o/--out``), the key shared by root and command."""
    opts = getattr(param, "opts", [])
    return next((o for o in opts if o.startswith("--")), opts[0] if opts else str(param.name))


def record_root_value(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback of a root option: remember a value the user gave (not a default) for the subcommand."""
    if value is not None and ctx.get_parameter_source(str(param.name)) in _GIVEN:
        ctx.meta.setdefault(ROOT_VALUES, {})[long_flag(param)] = value
    return value


def adopt_root_values(command: click.Command, ctx: click.Context) -> list[str]:
    """Make the root's recorded values the defaults of ``command``'s options of the same long spelling (set on
    ``ctx.default_map``, which a value on the command's own command line overrides); returns the spellings the
    command has no option for."""
    given: dict[str, Any] = ctx.meta.get(ROOT_VALUES) or {}
    defaults: dict[str, Any] = {}
    unmatched: list[str] = []
    for flag, value in given.items():
        param = next((p for p in command.params if isinstance(p, click.Option) and flag in p.opts), None)
        if param is None:
            unmatched.append(flag)
        else:
            defaults[str(param.name)] = value
    if defaults:
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return unmatched


def check_threads(value: int | None) -> int | None:
    """``None`` (torch's choice) or a thread count >= 1; else ``ValueError``."""
    if value is not None and value < 1:
        raise ValueError(f"invalid --threads {value}: must be >= 1")
    return value


def _apply_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if check_threads(value) is not None and not ctx.resilient_parsing:  # not while completing a command line
        import torch

        torch.set_num_threads(value)
    return value


THREADS_HELP = "CPU threads for torch (default: torch's choice; env RBC_THREADS). Use 1 on a busy machine."


def threads_option() -> click.Option:
    """The ``--threads`` option of a command: sets torch's CPU threads when the command runs. It reads no
    environment variable itself: ``RBC_THREADS`` is read by the root group and arrives as a root value."""
    return click.Option(
        ["--threads"], type=int, default=None, expose_value=False, callback=_apply_threads, help=THREADS_HELP
    )
