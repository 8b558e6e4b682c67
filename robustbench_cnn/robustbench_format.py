"""RobustBench-format checkpoints from a local file, loaded into a registry architecture, offline and safely.

RobustBench's model zoo stores a ``torch.save`` file whose content is a plain state dict or a dict wrapping it
(``{"state_dict": ..., "epoch": ...}``; also ``model_state_dict``/``model``/``net`` here), with keys often
prefixed ``module.`` (``nn.DataParallel``) or ``model.``; safetensors files work too. Its models take images in
[0, 1], normalisation (if any) inside their own modules, so the loaded network is wrapped with mean 0 and std 1
unless ``mean``/``std`` are given (or the file already has our ``NormalizedModel`` layout: ``net.*``, ``mean``,
``std``).

Loading is as safe as the store's (:mod:`robustbench_cnn.store`): ``torch.load(weights_only=True)`` or
safetensors, never an unpickler that runs code; the file's sha256 is checked against ``sha256`` when given;
the checkpoint's input channels must match the dataset's. Every failure is one line
(:class:`~robustbench_cnn.core.errors.CheckpointError`, :class:`~robustbench_cnn.core.errors.ShapeMismatchError`).
The returned :class:`~robustbench_cnn.store.ModelCard` lets :func:`~robustbench_cnn.store.save_checkpoint` put
the model into the store like any trained one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from robustbench_cnn.core.errors import ArchOptionError, CheckpointError, ShapeMismatchError
from robustbench_cnn.data import dataset_info
from robustbench_cnn.models import MODELS, NormalizedModel, build_model
from robustbench_cnn.store import ModelCard, package_versions, sha256_file, state_dict_error

__all__ = ["WRAPPER_KEYS", "load_robustbench_checkpoint", "read_robustbench_state"]

#: Keys under which a checkpoint dict may hold the state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
#: Key prefixes removed (repeatedly, in any order): DataParallel's ``module.`` and wrappers' ``model.``.
PREFIXES = ("module.", "model.")


def read_robustbench_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a RobustBench-format file, unwrapped and with ``module.``/``model.`` prefixes removed.

    Raises :class:`CheckpointError` (one line) for a missing, corrupt or non-weights-only file, a file without
    a state dict of tensors, or keys that collide once the prefixes are removed.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} does not exist")
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"corrupt weights file {file}: {exc}") from None
    else:
        try:
            raw = torch.load(str(file), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for code or foreign classes, RuntimeError for a broken file
            raise CheckpointError(
                f"refusing to load {file}: not a weights-only checkpoint (corrupt, or it holds pickled objects "
                f"other than tensors; {type(exc).__name__})"
            ) from None
    state = raw
    if isinstance(raw, Mapping):
        for key in WRAPPER_KEYS:
            inner = raw.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                state = inner
                break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{file} holds no state dict of tensors (plain, or under one of {', '.join(WRAPPER_KEYS)})"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = str(key)
        while name.startswith(PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(f"{file}: keys {key!r} and another one both become {name!r} without prefixes")
        out[name] = value
    return out


def _input_channels(state: Mapping[str, torch.Tensor]) -> int | None:
    """Input channels of the first convolution (the first 4-D weight in the file's order), if any."""
    for key, value in state.items():
        if key.endswith("weight") and value.dim() == 4:
            return int(value.shape[1])
    return None


def load_robustbench_checkpoint(
    path: str | os.PathLike,
    arch: str,
    dataset: str,
    *,
    sha256: str | None = None,
    name: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> tuple[NormalizedModel, ModelCard]:
    """Load a RobustBench-format checkpoint file into registry architecture ``arch`` for ``dataset``.

    Args:
        path: a ``.pt``/``.pth`` (``torch.save``) or ``.safetensors`` file on disk (nothing is downloaded).
        arch: a registered architecture (``rbc models list``), built for the dataset's channels, size, classes.
        dataset: the dataset the model classifies (``mnist``, ``imagefolder:PATH``, ...).
        sha256: the expected sha256 of the file (hex); a mismatch is refused.
        name: the card's name (default ``<dataset slug>/<arch>-robustbench-<file stem>``).
        arch_kwargs: architecture options (as ``--arch-arg``).
        mean, std: the normalisation the network expects (default none: 0 and 1 per channel).
        data_dir: data root for ``dataset``'s description (channels, size, classes).
        device: where to put the model.

    Returns the model (eval mode, inputs in [0, 1]) and a card whose ``weights_sha256`` is the file's sha256 and
    whose ``extra`` records the source file, its sha256 and the layout (``save_checkpoint`` replaces
    ``weights_sha256`` with the sha256 of the safetensors file it writes).
    """
    file = Path(path)
    actual = sha256_file(file) if file.is_file() else ""
    if sha256 is not None and file.is_file() and actual != sha256.lower():
        raise CheckpointError(
            f"checkpoint {file} is corrupt or was modified: sha256 is {actual[:12]}..., expected {sha256[:12]}..."
        )
    state = read_robustbench_state(file)
    if arch not in MODELS:
        raise CheckpointError(f"unknown architecture {arch!r}: use one of {', '.join(MODELS.list())}")
    info = dataset_info(dataset, data_dir)
    channels = _input_channels(state)
    if channels is not None and channels != info.channels:
        raise ShapeMismatchError(
            f"checkpoint {file.name} expects {channels}-channel input, but dataset {dataset!r} has {info.channels} "
            "channel(s)"
        )
    ours = all(k.startswith("net.") or k in ("mean", "std") for k in state)
    if ours and "mean" in state and mean is None:
        mean = [float(v) for v in state["mean"].flatten()]
    if ours and "std" in state and std is None:
        std = [float(v) for v in state["std"].flatten()]
    try:
        model = build_model(
            arch,
            in_channels=info.channels,
            num_classes=info.num_classes,
            input_size=info.size,
            mean=mean,
            std=std,
            **dict(arch_kwargs or {}),
        )
    except ArchOptionError as exc:
        raise ArchOptionError(f"checkpoint {file.name}: {exc}") from None
    target = model if ours else model.net
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights {file.name} do not fit architecture {arch!r}: {state_dict_error(exc)}"
        ) from None
    card = ModelCard(
        name=name or f"{info.slug}/{arch}-robustbench-{file.stem}",
        arch=arch,
        arch_kwargs=dict(arch_kwargs or {}),
        dataset=dataset,
        input_shape=[info.channels, info.size, info.size],
        num_classes=info.num_classes,
        classes=list(info.classes),
        mean=[float(v) for v in model.mean.flatten()],
        std=[float(v) for v in model.std.flatten()],
        recipe="robustbench",
        versions=package_versions(),
        weights_sha256=actual,
        extra={
            "source_file": str(file),
            "source_sha256": actual,
            "format": "robustbench",
            "layout": "normalized" if ours else "raw",
        },
    )
    return model.to(device).eval(), card
