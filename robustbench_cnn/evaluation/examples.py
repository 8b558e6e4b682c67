"""Adversarial examples for the leaderboard's example grid: ``examples.npz`` in a run folder.

The file holds a few clean/adversarial pairs per model, as plain arrays (no pickles):

- ``x``, ``x_adv``: float32 M x C x H x W in [0, 1];
- ``y``, ``pred_clean``, ``pred_adv``: int64 [M];
- ``model``: str [M] (the model each row belongs to);
- optional ``norm`` (str [M]), ``eps`` (float64 [M]), ``attack`` (str [M]) and ``classes`` (str [K]).

:func:`adversarial_examples` re-runs one attack on a handful of points; :func:`write_examples` does it for
store checkpoints and writes the file; :func:`load_examples` reads and validates it (``allow_pickle=False``).
The report only reads the file; it never runs an attack.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.files import give_default_mode

EXAMPLES_FILE = "examples.npz"
REQUIRED = ("x", "x_adv", "y", "pred_clean", "pred_adv", "model")
OPTIONAL = ("norm", "eps", "attack")


def adversarial_examples(
    model: Any,
    x: Any,
    y: Any,
    threat: Any,
    attack: str = "pgd",
    *,
    n: int = 4,
    seed: int = 0,
    model_name: str = "",
    **params: Any,
) -> dict[str, np.ndarray]:
    """Attack ``model`` on the first points it classifies correctly and keep ``n`` pairs, broken ones first.

    ``x``, ``y``: tensors (images in [0, 1], int64 labels); ``threat``: a ThreatModel or ``"linf:0.1"``.
    Returns the arrays of the ``examples.npz`` format for these ``n`` (or fewer) rows.
    """
    import torch

    from robustbench_cnn.attacks import get_attack
    from robustbench_cnn.core.types import ThreatModel

    threat = threat if isinstance(threat, ThreatModel) else ThreatModel.parse_ball(str(threat))
    device = next(model.parameters()).device
    with torch.no_grad():
        pred = model(x.to(device)).argmax(1).cpu()
    pool = (pred == y.cpu()).nonzero().flatten()[: 4 * n]
    if not len(pool):
        pool = torch.arange(min(n, len(y)))
    xs, ys = x[pool], y[pool]
    result = get_attack(attack, **params)(model, xs.to(device), ys.to(device), threat, seed=seed)
    order = torch.argsort((~result.success.cpu()).to(torch.int8), stable=True)[:n]  # broken first
    m = len(order)
    return {
        "x": xs[order].cpu().numpy().astype(np.float32),
        "x_adv": result.x_adv.detach().cpu()[order].numpy().astype(np.float32),
        "y": ys[order].cpu().numpy().astype(np.int64),
        "pred_clean": pred[pool][order].numpy().astype(np.int64),
        "pred_adv": result.pred_adv.cpu()[order].numpy().astype(np.int64),
        "model": np.array([model_name] * m, dtype=str),
        "norm": np.array([threat.norm.value] * m, dtype=str),
        "eps": np.full(m, threat.eps, dtype=np.float64),
        "attack": np.array([result.attack] * m, dtype=str),
    }


def save_examples(
    examples: dict[str, np.ndarray] | Sequence[dict[str, np.ndarray]],
    path: str | os.PathLike,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write one or several :func:`adversarial_examples` results (concatenated) to ``path``, atomically."""
    parts = [examples] if isinstance(examples, dict) else list(examples)
    if not parts:
        raise ValueError("no examples to save")
    keys = [k for k in (*REQUIRED, *OPTIONAL) if all(k in p for p in parts)]
    arrays = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in keys}
    if classes is not None:
        arrays["classes"] = np.asarray(list(classes), dtype=str)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        give_default_mode(tmp)  # mkstemp's 0600 -> what the umask allows
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_examples(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``examples.npz`` (no pickles); RbcError when it is unreadable or misses arrays."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise RbcError(f"unreadable examples file {path}: {exc}") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise RbcError(f"examples file {path} lacks arrays: {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    m = len(arrays["x"])
    if arrays["x_adv"].shape != arrays["x"].shape or any(len(arrays[k]) != m for k in REQUIRED[2:]):
        raise RbcError(f"examples file {path}: arrays x, x_adv, y, pred_clean, pred_adv, model differ in length")
    return arrays


def write_examples(
    run_dir: str | os.PathLike,
    models: Sequence[str],
    dataset: str,
    threat: str,
    attack: str = "pgd",
    *,
    n: int = 4,
    seed: int = 0,
    store: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    **params: Any,
) -> Path:
    """Compute :func:`adversarial_examples` for store checkpoints ``models`` on ``dataset`` and write
    ``run_dir/examples.npz`` (the first ``8 * n`` test points are the pool)."""
    import torch

    from robustbench_cnn.data import load_split
    from robustbench_cnn.workflows import load_for_dataset

    split = load_split(dataset, "test", n=8 * n, data_dir=data_dir)
    parts, classes = [], None
    for name in models:
        model, card = load_for_dataset(name, dataset, torch.device(device), store, data_dir)
        parts.append(
            adversarial_examples(
                model, split.x, split.y, threat, attack, n=n, seed=seed, model_name=card.name, **params
            )
        )
        classes = classes or card.classes
    return save_examples(parts, Path(run_dir) / EXAMPLES_FILE, classes)


__all__ = ["EXAMPLES_FILE", "adversarial_examples", "load_examples", "save_examples", "write_examples"]
