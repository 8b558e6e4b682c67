"""The click classes of ``rbc`` and how it reports input errors: one line ``Error: ...`` on stderr and exit code 2,
never a traceback."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from robustbench_cnn.commands.shared import ROOT_VALUES, adopt_root_values, threads_option
from robustbench_cnn.core.errors import RbcError


class InputError(click.ClickException):
    """A user input error: shown as one line ``Error: ...`` on stderr, exit code 2 (no usage block)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class _InputErrorsMixin:
    """Turns library input errors (``RbcError``, ``ValueError``) raised while a command parses its options or
    runs into ``InputError``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except (RbcError, ValueError) as exc:
            raise InputError(str(exc)) from None
        except click.UsageError as exc:  # click's own (no such option, missing option): one line too
            if exc.ctx is None:
                raise
            raise InputError(f"{exc.format_message()} (see {exc.ctx.command_path} --help)") from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (RbcError, ValueError) as exc:
            raise InputError(str(exc)) from None


class RbcCommand(_InputErrorsMixin, click.Command):
    """A command of ``rbc``: reports input errors as one line with exit code 2 (also when invoked alone), has
    ``--threads``, and takes the shared options given before it (``rbc --store S train``) as the defaults of its
    own (see :mod:`robustbench_cnn.commands.shared`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any(p.name == "threads" for p in self.params):
            self.params.append(threads_option())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)  # for the resume command of an interrupted run
        unmatched = adopt_root_values(self, ctx)
        rest = super().parse_args(ctx, args)  # first, so that `rbc --seed 1 report --help` still shows the help
        if unmatched and not ctx.resilient_parsing:  # (shell completion parses resiliently)
            raise InputError(
                f"{', '.join(unmatched)} given before the subcommand: {ctx.command_path} has no such option"
            )
        return rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            run_dir = getattr(exc, "run_dir", None)  # a pipeline.runner.RunInterrupted (not imported: lazy CLI)
            if run_dir is None:
                raise
            click.secho(
                f"Interrupted: {exc.finished} of {exc.total} cells finished are in {run_dir}",  # type: ignore[attr-defined]
                fg="yellow",
                err=True,
            )
            if any(isinstance(p, click.Option) and "--resume" in p.opts for p in self.params):
                click.echo(f"continue with: {resume_command(ctx, str(run_dir))}", err=True)
            raise click.exceptions.Exit(130) from None


#: ``ctx.meta`` key of the command's own arguments as given.
_ARGS = "robustbench_cnn.args"
_OUT_FLAGS = ("--out", "-o")


def resume_command(ctx: click.Context, run_dir: str) -> str:
    """The command line that continues ``ctx``'s run in ``run_dir``: the same command and arguments (the shared
    options given before the subcommand moved after it), without its ``--out``/``--resume`` spellings, plus
    ``--out RUN_DIR --resume``."""
    import shlex

    args: list[str] = []
    given = list(ctx.meta.get(_ARGS, []))
    for flag, value in (ctx.meta.get(ROOT_VALUES) or {}).items():
        if flag != "--out":
            given += [flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, str(value)]
    skip = False
    for arg in given:
        if skip:
            skip = False
        elif arg in _OUT_FLAGS:
            skip = True
        elif arg.startswith("--out=") or (arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--")):
            continue
        elif arg not in ("--resume", "--no-resume"):
            args.append(arg)
    path = ["rbc", *ctx.command_path.split()[1:]]
    return shlex.join([*path, *args, "--out", run_dir, "--resume"])


class RbcGroup(_InputErrorsMixin, click.Group):
    """A click group whose subcommands report input errors as one line with exit code 2; its ``command`` and
    ``group`` decorators make :class:`RbcCommand` and :class:`RbcGroup`."""

    command_class = RbcCommand
    group_class = type  # click: subgroups of the same class as this group


def input_errors(fn: Callable) -> Callable:
    """Library input errors (``RbcError``, ``ValueError``) become ``InputError`` (also for a command invoked
    on its own, outside the root group)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RbcError, ValueError) as exc:
            raise InputError(str(exc)) from None

    return wrapper


def parse_key_values(pairs: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """``("steps=20", "loss=ce", "alpha=2/255")`` -> ``{"steps": 20, "loss": "ce", "alpha": 0.00784...}``: values
    parsed as JSON when they can be, a fraction ``A/B`` as its number (as epsilons are written), else kept as text."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid {option} {pair!r}: use KEY=VALUE, e.g. steps=20")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = _fraction(value, f"{option} {pair!r}") if "/" in value else value
    return result


def _fraction(text: str, where: str) -> float | str:
    """``"2/255"`` -> 2/255; text that is not a fraction of two numbers is returned unchanged."""
    num, _, den = text.partition("/")
    try:
        numerator, denominator = float(num), float(den)
    except ValueError:
        return text
    if denominator == 0:
        raise ValueError(f"invalid {where}: division by zero")
    return numerator / denominator
