"""One small generic registry, used for models, attacks and defenses.

Registering is one decorator::

    MODELS = Registry("model")

    @MODELS.register("lenet5")
    def lenet5(in_channels: int, num_classes: int, input_size: int) -> nn.Module: ...

A duplicate name is an error; an unknown name raises :class:`UnknownNameError` that suggests close
names; ``list("resnet*")`` filters by a shell-style pattern.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from robustbench_cnn.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping filled by decorators."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a function or class under ``name`` (lower case, unique)."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = obj
            try:
                obj.registry_name = key  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; unknown names raise with suggestions."""
        key = name.lower()
        if key not in self._entries:
            raise UnknownNameError(self.kind, name, self.suggest(name), sorted(self._entries))
        return self._entries[key]

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Registered names close to ``name`` (for error messages)."""
        key = name.lower()
        close = difflib.get_close_matches(key, self._entries, n=n, cutoff=0.5)
        prefix = [k for k in sorted(self._entries) if k.startswith(key) and k not in close]
        return (close + prefix)[:n]

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern``."""
        return sorted(k for k in self._entries if fnmatch.fnmatch(k, pattern.lower()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())
