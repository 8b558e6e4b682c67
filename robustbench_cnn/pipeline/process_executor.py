"""The process executor: the cells of a run on a pool of local worker processes; only the driver (the runner) writes
files.

``rbc benchmark --executor processes --workers N`` runs up to N cells at once, each in a worker process started with
``spawn`` (a fresh interpreter: no threads or CUDA state inherited from the driver) using the driver's torch thread
count (``--threads``) divided among the workers, at least one each. The executor knows nothing of the runner: it is
handed the function that computes a cell (:func:`robustbench_cnn.pipeline.runner.execute_cell`), and the runner
submits a cell only once the cells it depends on are written. A cell computes the same numbers in a worker as in the
driver (seeded, the same thread count; the environment that pins the numerics, e.g. ``MKL_CBWR``, is inherited).

Workers ignore Ctrl-C: the driver receives it, stops the pool, and the run folder keeps every cell written so far
(``--resume`` continues it).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Callable
from typing import Any

__all__ = ["ProcessExecutor", "available_cpus"]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _start_worker(threads: int) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the pool
    torch.set_num_threads(threads)


class ProcessExecutor:
    """Runs submitted cells on ``workers`` spawned processes with ``threads`` torch threads each, returning them as
    they finish (a cell's error is raised in the driver by :meth:`next_done`)."""

    def __init__(self, fn: Callable[[Any, bool], Any], *, workers: int, threads: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.fn, self.workers, self.threads = fn, workers, max(1, threads)
        self.finished: queue.Queue[tuple[Any, Any, BaseException | None]] = queue.Queue()
        self.running = 0
        self.pool: Any = None

    def __enter__(self) -> ProcessExecutor:
        context = multiprocessing.get_context("spawn")
        self.pool = context.Pool(self.workers, initializer=_start_worker, initargs=(self.threads,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running:  # a failed or interrupted run: stop the cells still running
            self.pool.terminate()
        else:
            self.pool.close()
        self.pool.join()

    def submit(self, cell: Any) -> None:
        def done(result: Any) -> None:
            self.finished.put((cell, result, None))

        def failed(error: BaseException) -> None:
            self.finished.put((cell, None, error))

        self.running += 1
        self.pool.apply_async(self.fn, (cell, False), callback=done, error_callback=failed)

    def next_done(self) -> tuple[Any, Any]:
        """The next cell to finish and its result."""
        cell, result, error = self.finished.get()
        self.running -= 1
        if error is not None:
            raise error
        return cell, result
