"""The corruption "threat": which common corruption(s) and severity a cell evaluates, parsed from one string.

``corruption:fog:3`` (one corruption, one severity), ``corruption:fog`` (every severity of fog),
``corruptions`` (the benchmark's mean: every corruption, every severity it reports) and ``corruptions:3``
(every corruption at severity 3). :meth:`CorruptionThreat.parse` is the one place these strings become values;
which names exist is :mod:`robustbench_cnn.corruptions`' business (checked when the corruptions are resolved).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ALL", "CorruptionThreat"]

#: The ``name`` of :class:`CorruptionThreat` meaning every corruption of the benchmark.
ALL = "all"
#: The highest severity of any corruption (CIFAR-10-C and MNIST-C have 5).
MAX_SEVERITY = 5

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_FORMS = "corruption:NAME:SEVERITY (e.g. corruption:fog:3), corruption:NAME, corruptions or corruptions:SEVERITY"


@dataclass(frozen=True)
class CorruptionThreat:
    """A corruption (``name``; ``"all"`` for every one) at ``severity`` 1-5, or at all its severities (None)."""

    name: str
    severity: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not (_NAME_RE.match(self.name)):
            raise ValueError(f"invalid corruption name {self.name!r}: use lower-case letters, digits and '_'")
        if self.severity is not None and (
            isinstance(self.severity, bool) or not isinstance(self.severity, int) or not 1 <= self.severity <= 5
        ):
            raise ValueError(f"invalid corruption severity {self.severity!r}: use 1 to {MAX_SEVERITY}")

    @property
    def is_all(self) -> bool:
        return self.name == ALL

    @classmethod
    def parse(cls, text: str) -> CorruptionThreat:
        """``corruption:fog:3``, ``corruption:fog``, ``corruptions`` or ``corruptions:3`` (case-insensitive; ``-``
        in names reads as ``_``); anything else raises ``ValueError`` listing the accepted forms."""
        raw = str(text)
        parts = [p.strip() for p in raw.strip().lower().split(":")]
        head, rest = parts[0], parts[1:]
        try:
            if head == "corruptions" and len(rest) <= 1:
                return cls(ALL, _severity(rest[0]) if rest else None)
            if head == "corruption" and 1 <= len(rest) <= 2 and rest[0] and rest[0] != ALL:
                return cls(rest[0].replace("-", "_"), _severity(rest[1]) if len(rest) == 2 else None)
        except ValueError as exc:
            raise ValueError(f"invalid corruption threat {raw!r}: {exc}; use {_FORMS}") from None
        raise ValueError(f"invalid corruption threat {raw!r}: use {_FORMS}")

    def __str__(self) -> str:
        head = "corruptions" if self.is_all else f"corruption:{self.name}"
        return head if self.severity is None else f"{head}:{self.severity}"


def _severity(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"severity {text!r} is not a whole number from 1 to {MAX_SEVERITY}")
    value = int(text)
    if not 1 <= value <= MAX_SEVERITY:
        raise ValueError(f"severity {value} is not from 1 to {MAX_SEVERITY}")
    return value
