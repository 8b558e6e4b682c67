"""User-facing errors: each becomes a one-line message and exit code 2 in the CLI (never a traceback)."""

from __future__ import annotations


class RbcError(Exception):
    """An error caused by the user's input or environment, reported as one line with exit code 2."""

    exit_code = 2


class UnknownNameError(RbcError, KeyError):
    """An unknown registry name (model, attack, defense, dataset)."""

    def __init__(self, kind: str, name: str, suggestions: list[str], known: list[str]) -> None:
        self.kind, self.name, self.suggestions, self.known = kind, name, suggestions, known
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        listing = f" Known: {', '.join(known)}." if known and len(known) <= 40 else ""
        super().__init__(f"unknown {kind} {name!r}.{hint}{listing}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DataNotFoundError(RbcError):
    """A dataset that is not available locally and cannot be downloaded."""


class CheckpointError(RbcError):
    """A checkpoint that is missing, corrupt, tampered with or incompatible."""


class ShapeMismatchError(RbcError, ValueError):
    """Input shape or channels that do not match what a model expects."""


class BudgetExceededError(RbcError):
    """A black-box oracle asked for more queries than its budget allows."""


class ArchOptionError(RbcError, TypeError):
    """An architecture option (``--arch-arg`` or a card's ``arch_kwargs``) the architecture does not take.

    Also a ``TypeError``, as an unexpected keyword argument to a Python function is.
    """
