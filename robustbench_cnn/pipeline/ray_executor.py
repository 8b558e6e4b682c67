"""The Ray executor: independent cells run as Ray tasks; the driver writes each result as it arrives.

``pip install -e .[ray]``. With no address a local cluster is started (one CPU per task, so a 2-core machine
runs two cells at once); ``--ray-address`` joins an existing cluster. Results are the same tables as the
local executor: each task runs :func:`robustbench_cnn.pipeline.runner.run_cell`, and only the driver writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from robustbench_cnn.core.errors import RbcError


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RbcError("the ray executor needs Ray: pip install -e '.[ray]' (or use --executor local)") from None
    return ray


def _run_cell_task(cell: Any, run_id: str) -> tuple[Any, Any, str]:
    import torch

    from robustbench_cnn.pipeline.runner import run_cell

    torch.set_num_threads(1)  # one core per task: no oversubscription between concurrent cells
    summary, samples, _ = run_cell(cell, run_id, progress=False)
    return summary, samples, cell.id


def run_with_ray(
    cells: list[Any],
    store: Any,
    *,
    ray_address: str | None = None,
    on_cell: Callable[..., None] | None = None,
    num_cpus: int | None = None,
) -> None:
    """Run ``cells`` as Ray tasks and write each finished cell into ``store`` (a RunStore)."""
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if ray_address:
            kwargs["address"] = ray_address
        else:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        ray.init(**kwargs)
        started_here = True
    try:
        task = ray.remote(num_cpus=1)(_run_cell_task)
        pending = {task.remote(cell, store.run_id): cell for cell in cells}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                summary, samples, cid = ray.get(ref)
                store.write_cell(cid, summary, samples)
                if on_cell:
                    on_cell(cell, summary, None)
    finally:
        if started_here:
            ray.shutdown()
