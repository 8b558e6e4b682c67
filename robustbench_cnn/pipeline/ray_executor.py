"""The Ray executor: each cell runs as a Ray task; only the driver (the runner) writes files.

``pip install -e .[ray]``. With no address a local cluster is started (one CPU per task, so a 2-core machine runs
two cells at once); ``--ray-address`` joins an existing cluster, whose workers must see the same model store and
data. The executor knows nothing of the runner: it is handed the function that computes a cell
(:func:`robustbench_cnn.pipeline.runner.execute_cell`), and the runner submits a cell only once the cells it
depends on are written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from robustbench_cnn.core.errors import RbcError

__all__ = ["RayExecutor"]

#: Environment variables the workers need to see the driver's model store, data and offline mode, and to compute
#: like the driver where it pins its numerics (oneMKL's reproducible mode, ATen and oneDNN instruction sets: read
#: when a process starts, so they must be set for the worker, not inside the task).
FORWARDED_ENV = ("RBC_HOME", "RBC_DATA_DIR", "RBC_OFFLINE", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RbcError("the ray executor needs Ray: pip install -e '.[ray]' (or use --executor local)") from None
    return ray


def _run_task(fn: Callable[[Any, bool], Any], cell: Any) -> Any:
    import torch

    torch.set_num_threads(1)  # one core per task: no oversubscription between concurrent cells
    return fn(cell, False)


class RayExecutor:
    """Submits cells as Ray tasks (``num_cpus=1`` each) and returns them as they finish.

    Starts a local Ray cluster of ``num_cpus`` CPUs (default: all) unless Ray is initialised already or
    ``ray_address`` names a cluster to join; shuts down only a cluster it started.
    """

    def __init__(
        self, fn: Callable[[Any, bool], Any], *, ray_address: str | None = None, num_cpus: int | None = None
    ) -> None:
        self.fn, self.ray_address, self.num_cpus = fn, ray_address, num_cpus
        self.ray = _import_ray()
        self.pending: dict[Any, Any] = {}
        self.started_here = False

    def __enter__(self) -> RayExecutor:
        ray = self.ray
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "ignore_reinit_error": True,
                "runtime_env": {"env_vars": env},
            }
            if self.ray_address:
                kwargs["address"] = self.ray_address
            else:
                kwargs["num_cpus"] = self.num_cpus or os.cpu_count() or 1
            ray.init(**kwargs)
            self.started_here = True
        self.task = ray.remote(num_cpus=1)(_run_task)
        return self

    def __exit__(self, *exc: object) -> None:
        for ref in self.pending:  # a failed run: stop the cells still running
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001  (a task that finished meanwhile cannot be cancelled)
                pass
        self.pending.clear()
        if self.started_here:
            self.ray.shutdown()

    def submit(self, cell: Any) -> None:
        self.pending[self.task.remote(self.fn, cell)] = cell

    def next_done(self) -> tuple[Any, Any]:
        """The next cell to finish and its result (a task's error is raised here, in the driver)."""
        done, _ = self.ray.wait(list(self.pending), num_returns=1)
        ref = done[0]
        cell = self.pending.pop(ref)
        return cell, self.ray.get(ref)
