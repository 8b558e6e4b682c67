"""Device selection and reproducibility: nothing else in the package chooses a device."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from robustbench_cnn.core.errors import RbcError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is a clear error."""
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = text.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise RbcError(f"invalid device {name!r}: use one of auto, cpu, cuda, cuda:N, mps")
    if base == "cuda" and not torch.cuda.is_available():
        raise RbcError(f"device {name!r} requested but CUDA is not available on this machine; use --device cpu or auto")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RbcError(f"device {name!r} requested but MPS is not available; use --device cpu or auto")
    try:
        return torch.device(text)
    except RuntimeError as exc:
        raise RbcError(f"invalid device {name!r}: {exc}") from None


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch; with ``deterministic`` also ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The mixed-precision dtype for ``--amp`` on this device (bf16 where supported), or None."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
