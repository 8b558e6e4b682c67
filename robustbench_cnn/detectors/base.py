"""The one detector base class: a score that is high on adversarial inputs, calibrated to a false positive rate.

A detector ``D`` sits beside a classifier ``f``: it scores an input (higher = more likely adversarial) and flags it
when the score exceeds a threshold; the classifier then abstains. Subclasses implement
:meth:`Detector.logits_and_score` (one forward pass giving the classifier's logits and the score, differentiable in
the input: a non-differentiable step passes the gradient through as the identity, BPDA of Athalye, Carlini & Wagner
2018) and, when they learn something, :meth:`Detector.fit`. The base class does the rest the same way for all:

- :meth:`calibrate`: the threshold is the ``1 - fpr`` quantile of the scores of clean held-out points (default
  fpr 5%: the 95th percentile, numpy's ``"higher"`` quantile, so at most ``fpr`` of those points are flagged);
- :meth:`flag` / :meth:`scores`: batched, without autograd, the model in eval mode.

Class attributes describe the detector (declared, never inferred from its name):

- ``paper``: the reference;
- ``needs_adversarial``: :meth:`fit` needs adversarial examples of the training points (a learned detector);
- ``randomized``: the score is random (an adaptive attack then averages gradients, EOT);
- ``bpda``: the score has non-differentiable steps whose gradient is replaced by the identity;
- ``has_views``: the score compares the classifier's outputs on several views of the input
  (:meth:`Detector.view_logits`); an adaptive attack can then also make every view agree on one wrong class;
- ``defaults``: every parameter with its default; ``Detector(**params)`` overrides them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.detectors.features import batched

#: Default false positive rate of the calibration (Xu et al. 2018 and most detection papers report 5%).
DEFAULT_FPR = 0.05


class Detector:
    """Base class of every detector; see the module docstring for the contract."""

    paper: ClassVar[str] = ""
    needs_adversarial: ClassVar[bool] = False
    randomized: ClassVar[bool] = False
    bpda: ClassVar[bool] = False
    has_views: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    registry_name: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"invalid parameter(s) {', '.join(unknown)} for detector {self.name!r}: accepted: {accepted}"
            )
        for key, value in params.items():
            default = self.defaults[key]
            if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
                try:
                    params[key] = type(default)(float(value)) if isinstance(default, int) else float(value)
                except ValueError:
                    raise ValueError(
                        f"invalid {key} {value!r} for detector {self.name!r}: must be a number (default {default!r})"
                    ) from None
        self.params: dict[str, Any] = {**self.defaults, **params}
        #: flag when ``score > threshold``; set by :meth:`calibrate`
        self.threshold: float | None = None
        #: spread of the clean calibration scores (their interquartile range, at least 1e-6): the unit in which
        #: the adaptive attack's detector logit measures ``score - threshold``
        self.scale: float = 1.0
        #: false positive rate asked for and the one reached on the calibration points
        self.fpr: float = DEFAULT_FPR
        self.calibration_fpr: float = float("nan")

    @property
    def name(self) -> str:
        return self.registry_name or type(self).__name__.lower()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------------------- to implement
    def fit(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        x_adv: torch.Tensor | None,
        generator: torch.Generator,
        batch_size: int = 500,
    ) -> None:
        """Learn from training points ``x`` (labels ``y``) and, for ``needs_adversarial`` detectors, their
        adversarial examples ``x_adv``; ``model`` is in eval mode with frozen parameters. Default: nothing."""

    def logits_and_score(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits N x K, score N)`` of one batch, differentiable in ``x`` (BPDA through non-differentiable
        steps); higher scores mean more likely adversarial."""
        raise NotImplementedError

    def view_logits(self, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """``has_views`` detectors: the classifier's logits on each view of ``x`` (the input first),
        differentiable in ``x``; the others have none (``NotImplementedError``)."""
        raise NotImplementedError(f"detector {self.name!r} compares no views")

    # ------------------------------------------------------------------------------- shared work
    def scores(self, model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Scores of ``x`` (N), batched, without autograd, ``model`` in eval mode."""
        with eval_mode(model):
            return batched(lambda xb: self.logits_and_score(model, xb)[1], x, batch_size)

    def predict(self, model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predicted class N, flagged N)`` of ``x`` from one forward pass per batch."""
        preds, flags = [], []
        with eval_mode(model), torch.no_grad():
            for xb in x.split(batch_size):
                logits, score = self.logits_and_score(model, xb)
                preds.append(logits.argmax(dim=1))
                flags.append(score > self.require_threshold())
        if not preds:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool)
        return torch.cat(preds), torch.cat(flags)

    def flag(self, model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Whether each point of ``x`` is flagged (``score > threshold``)."""
        return self.scores(model, x, batch_size) > self.require_threshold()

    def require_threshold(self) -> float:
        if self.threshold is None:
            raise ValueError(f"detector {self.name!r} is not calibrated: call calibrate() first")
        return self.threshold

    def calibrate(
        self, model: nn.Module, x_clean: torch.Tensor, fpr: float = DEFAULT_FPR, batch_size: int = 500
    ) -> float:
        """Set the threshold to the ``1 - fpr`` quantile of the scores of the clean held-out points ``x_clean``
        (numpy ``method="higher"``: at most ``fpr`` of them score above it) and return it."""
        if not 0 < fpr < 1:
            raise ValueError(f"invalid false positive rate {fpr!r}: must be in (0, 1)")
        if not len(x_clean):
            raise ValueError("calibration needs clean held-out points")
        s = self.scores(model, x_clean, batch_size).double().cpu().numpy()
        self.fpr = float(fpr)
        self.threshold = float(np.quantile(s, 1 - fpr, method="higher"))
        q1, q3 = np.quantile(s, [0.25, 0.75])
        self.scale = max(float(q3 - q1), 1e-6)
        self.calibration_fpr = float((s > self.threshold).mean())
        return self.threshold


class StraightThrough(torch.autograd.Function):
    """``value`` in the forward pass, the identity gradient to ``x`` in the backward pass (BPDA)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def bpda(x: torch.Tensor, fn: Any) -> torch.Tensor:
    """``fn(x)`` exactly in the forward pass, with the identity as its gradient (Athalye et al. 2018's BPDA)."""
    with torch.no_grad():
        value = fn(x.detach())
    return StraightThrough.apply(x, value)
