"""Bring your own model: a Python file defining the model plus a safetensors weights file.

``--model-def path/to/file.py:factory --weights w.safetensors``: ``factory()`` must return an ``nn.Module``
taking images in [0, 1] (normalization inside) and returning logits. The Python file is code you chose to run;
the weights are data and are read without unpickling.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from robustbench_cnn.core.errors import CheckpointError, RbcError, ShapeMismatchError
from robustbench_cnn.store import load_state_dict_file, sha256_file, state_dict_error


def _import_file(path: Path) -> ModuleType:
    """Execute the user's model file as a module; any error in it becomes one line naming the file."""
    module_spec = importlib.util.spec_from_file_location(f"rbc_user_model_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise RbcError(f"{path}: cannot be imported as a Python module (use a .py file)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses, typing and pickle look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # SyntaxError, ImportError, NameError, ...: the user's code, not ours
        sys.modules.pop(module_spec.name, None)
        raise RbcError(f"{path}: {_one_line(exc)}") from None
    return module


def _build(path: Path, spec: str, factory_name: str) -> nn.Module:
    """Call ``factory_name()`` from ``path``; errors raised by the factory become one line naming the file."""
    module = _import_file(path)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise RbcError(f"{path} defines no callable {factory_name!r}")
    try:
        model = factory()
    except Exception as exc:
        raise RbcError(f"{path}: {factory_name}() raised {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise RbcError(f"{spec} returned {type(model).__name__}, not an nn.Module")
    return model


def _one_line(exc: BaseException, first_line: bool = False) -> str:
    """``Type: message`` on one line (a SyntaxError names its line; ``first_line``: only the message's first
    line, for torch's long multi-line errors)."""
    if isinstance(exc, SyntaxError):
        text = f"{exc.msg} (line {exc.lineno})" if exc.lineno else str(exc.msg)
    else:
        message = str(exc).strip()
        text = " ".join((message.split("\n", 1)[0] if first_line else message).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_weights(model: nn.Module, weights: str, spec: str) -> str:
    """Load a weights file into ``model`` (strict); returns its sha256."""
    wpath = Path(weights)
    if not wpath.is_file():
        raise CheckpointError(f"weights file {wpath} does not exist")
    state = load_state_dict_file(wpath)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights {wpath} do not fit {spec}: {state_dict_error(exc)}") from None
    return sha256_file(wpath)


def load_model_def(spec: str, weights: str | None, device: torch.device) -> tuple[nn.Module, str]:
    """Build ``factory()`` from ``file.py:factory`` and load ``weights``; returns (model, weights sha256)."""
    path_text, sep, factory_name = spec.rpartition(":")
    if not sep or not path_text or not factory_name:
        raise RbcError(f"invalid --model-def {spec!r}: use path/to/file.py:factory")
    path = Path(path_text)
    if not path.is_file():
        raise RbcError(f"model definition file {path} does not exist")
    model = _build(path, spec, factory_name)
    sha = _load_weights(model, weights, spec) if weights else ""
    return model.to(device).eval(), sha


def check_input(
    model: nn.Module,
    x: torch.Tensor,
    name: str,
    dataset: str,
    num_classes: int | None = None,
    data_dir: str | None = None,
) -> None:
    """Run the model on a couple of inputs and turn a shape error into a clear message.

    The output must be logits N x ``num_classes`` (default: the number of classes of ``dataset``, found
    under ``data_dir``; not checked when the dataset's classes are unknown).
    """
    try:
        with torch.no_grad():
            out = model(x)
    except RbcError:
        raise
    except Exception as exc:  # RuntimeError from torch, but also AssertionError, IndexError, ... from user code
        raise ShapeMismatchError(
            f"model {name} cannot take {dataset} images of shape "
            f"{tuple(x.shape[1:])}: {_one_line(exc, first_line=True)}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeMismatchError(f"model {name} must return logits N x classes, got {shape}")
    if num_classes is None:
        from robustbench_cnn.data import dataset_info

        num_classes = dataset_info(dataset, data_dir).num_classes
    if num_classes and out.shape[1] != num_classes:
        raise ShapeMismatchError(
            f"model {name} returns {out.shape[1]} class scores, but dataset {dataset!r} has {num_classes} classes"
        )
