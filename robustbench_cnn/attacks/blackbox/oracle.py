"""A query-counting, gradient-free view of a target model: what a black-box attacker may see.

``Oracle(model, mode="labels", budget=6400)`` answers queries with the predicted labels only
(``mode="labels"``, the decision-based setting of Papernot et al. 2017) or with scores
(``mode="scores"``: softmax probabilities, or logits with ``scores="logits"``). Every image in a
query costs one query; queries are counted in total and, when the caller passes sample ids, per
sample. A query that would go over the budget raises :class:`BudgetExceededError` before the model
runs, so the count never exceeds the budget; ``remaining()`` lets an attacker stop cleanly instead.

Gradients through the oracle are impossible by construction:

- ``Oracle`` is **not** an ``nn.Module``: it has no ``parameters()``, and assigning it to a module
  attribute does not register the target as a submodule, so an attack cannot reach the weights
  through the usual interfaces (the target lives in a private attribute; Python cannot hide it
  from code that looks for it on purpose, so do not look);
- inputs are detached copies and the model runs under ``torch.no_grad()``, so answers never
  require grad and calling ``.backward()`` on anything computed from them raises ``RuntimeError``.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
from torch import nn

from robustbench_cnn.core.errors import BudgetExceededError

MODES = ("labels", "scores")
SCORES = ("probs", "logits")

__all__ = ["MODES", "Oracle"]


def _parse_budget(budget: int | float | None) -> int | None:
    """A query budget as an int >= 0, or None (unlimited; ``float("inf")`` means the same)."""
    if budget is None or budget == math.inf:
        return None
    if (
        isinstance(budget, bool)
        or not isinstance(budget, numbers.Real)
        or not math.isfinite(budget)
        or int(budget) != budget
        or budget < 0
    ):
        raise ValueError(f"invalid query budget {budget!r}: use an integer >= 0, or None for no budget")
    return int(budget)


class Oracle:
    """Label- or score-only access to ``model`` with exact query accounting and an optional budget.

    Args:
        model: the target ``nn.Module`` (images in [0, 1] -> logits N x K). It is queried in eval
            mode; its own train/eval mode is restored after each query.
        mode: ``"labels"`` (int64 predictions, nothing else leaks) or ``"scores"``.
        budget: the most queries (images) the oracle answers in total; None (or ``float("inf")``) = unlimited.
        scores: in ``"scores"`` mode, ``"probs"`` (softmax, default) or ``"logits"``.
        batch_size: the model sees at most this many images at once (answers are unchanged).

    Example::

        >>> oracle = Oracle(target, mode="labels", budget=100)
        >>> labels = oracle(x[:10], ids=torch.arange(10))   # 10 queries, one per sample id
        >>> oracle.total, oracle.remaining(), oracle.counts(torch.arange(10))
        (10, 90, tensor([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]))
    """

    def __init__(
        self,
        model: nn.Module,
        mode: Literal["labels", "scores"] = "labels",
        budget: int | None = None,
        *,
        scores: Literal["probs", "logits"] = "probs",
        batch_size: int = 1024,
    ) -> None:
        if isinstance(model, Oracle):
            raise TypeError("model is already an Oracle; wrap the nn.Module itself")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module returning logits, got {type(model).__name__}")
        if mode not in MODES:
            raise ValueError(f"invalid oracle mode {mode!r}: use one of {', '.join(MODES)}")
        if scores not in SCORES:
            raise ValueError(f"invalid oracle scores {scores!r}: use one of {', '.join(SCORES)}")
        budget = _parse_budget(budget)
        if batch_size < 1:
            raise ValueError(f"invalid batch size {batch_size}: must be >= 1")
        self.__model = model  # name-mangled: not an attribute an attack reaches by accident
        self.mode = mode
        self.scores = scores
        self.budget = None if budget is None else int(budget)
        self.batch_size = int(batch_size)
        self.total = 0
        self.calls = 0
        self._per_sample = torch.zeros(0, dtype=torch.int64)

    def __repr__(self) -> str:
        budget = "unlimited" if self.budget is None else str(self.budget)
        return f"Oracle(mode={self.mode!r}, queries={self.total}, budget={budget})"

    # ------------------------------------------------------------------------------- accounting
    def remaining(self) -> int | None:
        """Queries left before the budget is reached (None: no budget)."""
        return None if self.budget is None else self.budget - self.total

    def counts(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample query counts (int64): for ``ids``, or for every id ``0..max id seen``."""
        if ids is None:
            return self._per_sample.clone()
        ids = torch.as_tensor(ids, dtype=torch.int64).flatten().cpu()
        out = torch.zeros(ids.numel(), dtype=torch.int64)
        known = ids < self._per_sample.numel()
        out[known] = self._per_sample[ids[known]]
        return out

    def reset(self) -> None:
        """Forget every count (the budget applies afresh)."""
        self.total, self.calls = 0, 0
        self._per_sample = torch.zeros(0, dtype=torch.int64)

    def _check_budget(self, n: int) -> None:
        """Refuse a query of ``n`` images that would go over the budget (before the model runs)."""
        if self.budget is not None and self.total + n > self.budget:
            raise BudgetExceededError(
                f"oracle query budget exceeded: this query needs {n} more, {self.total} of "
                f"{self.budget} are used ({self.budget - self.total} left); check Oracle.remaining() "
                "before querying, or raise the budget"
            )

    def _charge(self, n: int, ids: torch.Tensor | None) -> None:
        """Count ``n`` answered queries (per sample too when ``ids`` are given)."""
        if ids is not None:
            top = int(ids.max()) + 1 if ids.numel() else 0
            if top > self._per_sample.numel():
                grown = torch.zeros(top, dtype=torch.int64)
                grown[: self._per_sample.numel()] = self._per_sample
                self._per_sample = grown
            self._per_sample.index_add_(0, ids, torch.ones_like(ids))
        self.total += n
        self.calls += 1

    # ---------------------------------------------------------------------------------- queries
    def __call__(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Answer a query: int64 labels ``[N]`` (labels mode) or float scores ``N x K`` (scores mode).

        ``x``: images N x C x H x W in [0, 1] (N queries); ``ids``: optional int64 sample ids [N]
        (>= 0; repeated ids are counted once per occurrence). The answer is on ``x``'s device and
        never requires grad.
        """
        x = self._check_input(x)
        n = x.shape[0]
        if ids is not None:
            ids = torch.as_tensor(ids).detach().flatten().cpu()
            if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or ids.numel() != n:
                raise ValueError(f"ids must be {n} integer sample ids, got {ids.numel()} of dtype {ids.dtype}")
            ids = ids.to(torch.int64)
            if ids.numel() and ids.min() < 0:
                raise ValueError("ids must be >= 0")
        self._check_budget(n)
        if n == 0:
            self._charge(n, ids)
            return (
                torch.zeros(0, dtype=torch.int64, device=x.device)
                if self.mode == "labels"
                else torch.zeros(0, 0, device=x.device)
            )
        logits = self._forward(x)
        self._charge(n, ids)  # only answered queries are spent: a forward pass that failed costs nothing
        if self.mode == "labels":
            return logits.argmax(dim=1).to(x.device)
        out = logits if self.scores == "logits" else logits.float().softmax(dim=1)
        return out.to(x.device)

    def labels(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted labels int64 [N] in either mode (in scores mode: the argmax of the scores)."""
        answer = self(x, ids)
        return answer if self.mode == "labels" else answer.argmax(dim=1)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            desc = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"oracle queries must be float images N x C x H x W in [0, 1], got {desc}")
        x = x.detach()
        if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise ValueError("oracle queries must be finite and in [0, 1]")
        return x

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.__model
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = x.device
        was_training = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            outs = [model(xb.to(device).clone()).detach() for xb in x.split(self.batch_size)]
        finally:
            for m, flag in was_training:
                m.training = flag
        logits = torch.cat(outs)
        if logits.dim() != 2:
            raise ValueError(f"the target must return logits N x K, got shape {tuple(logits.shape)}")
        return logits
