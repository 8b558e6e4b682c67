"""Bring your own model: a Python file defining the model plus a safetensors weights file.

``--model-def path/to/file.py:factory --weights w.safetensors``: ``factory()`` must return an ``nn.Module``
taking images in [0, 1] (normalization inside) and returning logits. The Python file is code you chose to run;
the weights are data and are read without unpickling.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from robustbench_cnn.errors import CheckpointError, RbcError, ShapeMismatchError
from robustbench_cnn.store import load_state_dict_file, sha256_file


def load_model_def(spec: str, weights: str | None, device: torch.device) -> tuple[nn.Module, str]:
    """Build ``factory()`` from ``file.py:factory`` and load ``weights``; returns (model, weights sha256)."""
    path_text, sep, factory_name = spec.rpartition(":")
    if not sep or not path_text or not factory_name:
        raise RbcError(f"invalid --model-def {spec!r}: use path/to/file.py:factory")
    path = Path(path_text)
    if not path.is_file():
        raise RbcError(f"model definition file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"rbc_user_model_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise RbcError(f"{path} defines no callable {factory_name!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise RbcError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    sha = ""
    if weights:
        wpath = Path(weights)
        if not wpath.is_file():
            raise CheckpointError(f"weights file {wpath} does not exist")
        state = load_state_dict_file(wpath)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights {wpath} do not fit {spec}: {str(exc).splitlines()[0]}") from None
        sha = sha256_file(wpath)
    return model.to(device).eval(), sha


def check_input(model: nn.Module, x: torch.Tensor, name: str, dataset: str) -> None:
    """Run the model on a couple of inputs and turn a shape error into a clear message."""
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as exc:
        raise ShapeMismatchError(f"model {name} cannot take {dataset} images of shape "
                                 f"{tuple(x.shape[1:])}: {str(exc).splitlines()[0]}") from None
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ShapeMismatchError(f"model {name} must return logits N x classes, got {tuple(out.shape)}")
