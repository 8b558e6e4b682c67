"""Accuracy under common corruptions (RobustBench's corruptions track): per corruption and severity, and the mean.

``evaluate_corruptions(model, x, y, "corruptions")`` corrupts the points with every (corruption, severity) cell of
the benchmark (:func:`robustbench_cnn.corruptions.benchmark_cells`: CIFAR-10-C's 15 x 5, or MNIST-C's 15 at their
published severities) and returns plain records; the mean corruption accuracy is the mean over those cells, as
RobustBench reports it for CIFAR-10-C (every corruption and severity weighted equally). Other threats select
fewer cells: ``corruption:fog`` (every severity of fog), ``corruption:fog:3``, ``corruptions:5``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.corruption_threat import CorruptionThreat
from robustbench_cnn.core.model_utils import batched_logits, eval_mode
from robustbench_cnn.corruptions import benchmark_cells, corrupt, default_benchmark, resolve_threat
from robustbench_cnn.evaluation.engine import model_device

__all__ = ["CorruptionEvaluation", "evaluate_corruptions"]


@dataclass
class CorruptionEvaluation:
    """Accuracy of one model on the same points, clean and under each (corruption, severity) cell."""

    benchmark: str
    threat: CorruptionThreat
    n: int
    clean_accuracy: float
    #: one record per cell: corruption, severity, n, accuracy, seconds (corrupting + predicting)
    cells: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0

    @property
    def mean_accuracy(self) -> float:
        """Mean accuracy over the evaluated cells (each cell weighted equally)."""
        return sum(c["accuracy"] for c in self.cells) / len(self.cells) if self.cells else float("nan")

    @property
    def is_benchmark_mean(self) -> bool:
        """Whether the evaluated cells are exactly the benchmark's (so :attr:`mean_accuracy` is its reported mean
        corruption accuracy)."""
        return {(c["corruption"], c["severity"]) for c in self.cells} == set(benchmark_cells(self.benchmark))

    def per_corruption(self) -> list[dict[str, Any]]:
        """One record per corruption: its mean accuracy over the evaluated severities."""
        names = list(dict.fromkeys(c["corruption"] for c in self.cells))
        out = []
        for name in names:
            rows = [c for c in self.cells if c["corruption"] == name]
            out.append(
                {
                    "corruption": name,
                    "severities": len(rows),
                    "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
                }
            )
        return out

    def records(self, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Plain rows for a results table: one per cell, then a ``mean`` row (``severity`` 0) with the mean
        accuracy; every row carries the benchmark, threat, n, seed, clean accuracy and ``meta``."""
        common = {
            "benchmark": self.benchmark,
            "threat": str(self.threat),
            "n": self.n,
            "seed": self.seed,
            "clean_accuracy": self.clean_accuracy,
            **(meta or {}),
        }
        rows = [{**common, **cell} for cell in self.cells]
        rows.append(
            {
                **common,
                "corruption": "mean",
                "severity": 0,
                "accuracy": self.mean_accuracy,
                "seconds": sum(c["seconds"] for c in self.cells),
                "benchmark_mean": self.is_benchmark_mean,
            }
        )
        return rows


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    logits = batched_logits(model, x, batch_size)
    if logits is None:
        raise ValueError("no images to evaluate")
    return logits.argmax(1).to(y.device) == y


def evaluate_corruptions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: CorruptionThreat | str = "corruptions",
    *,
    benchmark: str | None = None,
    seed: int = 0,
    indices: Sequence[int] | torch.Tensor | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> CorruptionEvaluation:
    """Accuracy of ``model`` on ``(x, y)`` under the corruption cells ``threat`` names.

    Args:
        model: an ``nn.Module`` taking images in [0, 1] (1 or 3 channels) and returning logits.
        x, y: images N x C x H x W in [0, 1] and int64 labels.
        threat: ``corruptions`` (the benchmark's cells), ``corruptions:S``, ``corruption:NAME`` or
            ``corruption:NAME:S`` (a :class:`CorruptionThreat` or its text).
        benchmark: ``cifar10-c`` or ``mnist-c`` (default: by channels, 3 -> cifar10-c, 1 -> mnist-c).
        seed: seeds the corruptions (with each image's index).
        indices: per-image indices for the corruption generators (e.g. a Split's ``index``; default 0..N-1).
        batch_size: prediction mini-batch size.
        device: where to predict (default: the model's device); corruptions are made on the CPU.
    """
    threat = threat if isinstance(threat, CorruptionThreat) else CorruptionThreat.parse(threat)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(f"y must be an int64 tensor of shape ({x.shape[0]},)")
    chosen = benchmark or default_benchmark(int(x.shape[1]))
    cells = resolve_threat(threat, chosen)
    dev = torch.device(device) if device is not None else model_device(model, x)
    y_dev = y.to(dev)
    records = []
    with eval_mode(model), torch.no_grad():
        clean = float(_accuracy(model, x.to(dev), y_dev, batch_size).float().mean())
        for name, severity in cells:
            t0 = time.perf_counter()
            corrupted = corrupt(x.cpu(), name, severity, seed, benchmark=chosen, indices=indices)
            correct = _accuracy(model, corrupted.to(dev), y_dev, batch_size)
            records.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "n": int(y.numel()),
                    "accuracy": float(correct.float().mean()),
                    "seconds": time.perf_counter() - t0,
                }
            )
    return CorruptionEvaluation(chosen, threat, int(y.numel()), clean, records, seed)
