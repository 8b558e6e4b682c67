"""File modes: atomic writers create their temporary file with ``tempfile.mkstemp``, which is always mode 0600;
the finished file gets the mode an ordinary ``open()`` would give it (``0o666`` less the process umask), so that
a team sharing a results folder or a model store can read each other's files."""

from __future__ import annotations

import os

__all__ = ["default_file_mode", "give_default_mode"]


def _umask() -> int:
    """The process umask, read from ``/proc/self/status`` where it is (thread-safe), else by setting and
    restoring it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` creates a file with."""
    return 0o666 & ~_umask()


def give_default_mode(path: str | os.PathLike) -> None:
    """Set ``path`` (a temporary file from ``mkstemp``, mode 0600) to :func:`default_file_mode`."""
    os.chmod(path, default_file_mode())
