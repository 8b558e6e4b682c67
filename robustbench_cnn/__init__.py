"""robustbench-cnn: an adversarial-robustness benchmark harness for convolutional image classifiers.

Python API (mirrors RobustBench where it can)::

    from robustbench_cnn import load_model, load_split
    model = load_model("digits/lenet5-standard", device="cpu")

The names below are imported on first use (PEP 562), so that importing a sub-package (``robustbench_cnn.commands``
for ``rbc --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY = {
    "AttackResult": "robustbench_cnn.core.types",
    "Norm": "robustbench_cnn.core.types",
    "ThreatModel": "robustbench_cnn.core.types",
    "load_split": "robustbench_cnn.data",
    "load_model": "robustbench_cnn.workflows",
    "train_model": "robustbench_cnn.workflows",
}

__all__ = ["AttackResult", "Norm", "ThreatModel", "load_model", "load_split", "train_model", "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; nothing is imported at run time
    from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel
    from robustbench_cnn.data import load_split
    from robustbench_cnn.workflows import load_model, train_model


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'robustbench_cnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access does not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
