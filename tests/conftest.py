"""Shared fixtures: seeded, offline, CPU, with an isolated model store per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RBC_OFFLINE", "1")  # tests never try the network
# Piped output is laid out wide unless COLUMNS is set (commands/output.py); pytest-xdist's workers set COLUMNS=80.
# Without it the tests see the same layout serially and in parallel; a test that wants a width passes terminal_width.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
# One thread: deterministic, and on a shared 2-core machine more threads make small models slower, not faster.
torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("RBC_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_data_or_skip(*parts: str) -> Path:
    """The path under ../shared/data (or $RBC_DATA_DIR), or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (set RBC_DATA_DIR to the shared data folder)")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model store for one test."""
    monkeypatch.setenv("RBC_HOME", str(tmp_path / "store"))
    return tmp_path / "store"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files holding ``slow`` tests first, the others after, each file's tests kept together and in order.

    pytest-xdist (``--dist loadfile``) hands the files to its workers in this order, so the longest files start at
    once instead of last: a slow file collected late (``test_single_step_collapse_mnist.py``) used to run alone at the
    end while the other worker idled."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within each group is kept
