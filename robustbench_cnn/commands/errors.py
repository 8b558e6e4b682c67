"""How the CLI reports input errors: one line ``Error: ...`` on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from robustbench_cnn.core.errors import RbcError


class InputError(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class _InputErrorsMixin:
    """Turns library input errors raised while a command runs into ``InputError``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (RbcError, ValueError) as exc:
            raise InputError(str(exc)) from None


class RbcGroup(_InputErrorsMixin, click.Group):
    """A click group whose subcommands report input errors as one line with exit code 2."""


class RbcCommand(_InputErrorsMixin, click.Command):
    """A click command that reports input errors as one line with exit code 2, also when invoked alone."""


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
