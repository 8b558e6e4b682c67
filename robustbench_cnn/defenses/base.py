"""The base class of the training recipes: parameters with defaults, the threat model, the report.

A defense is a :class:`~robustbench_cnn.training.Recipe` (``name``, ``params()``, ``loss(model, x, y, ctx)``)
that also knows its threat model. ``Defense(threat, **params)`` validates the parameters against
``defaults`` (``None`` means "use the default"), and subclasses resolve derived defaults (step sizes
that depend on epsilon) in :meth:`resolve`. Optional hooks, used by :func:`defenses.train.defend`:

- ``callbacks(config)``: epoch callbacks the recipe needs (the FGSM-RS overfitting guard);
- ``report()``: what happened during training (guard events), stored in the model card.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.types import ThreatModel, parse_bool
from robustbench_cnn.defenses.perturb import ce_objective, check_norm, perturb
from robustbench_cnn.defenses.presets import Preset
from robustbench_cnn.training import EpochCallback, StepContext, TrainConfig


class Defense:
    """A training recipe against a threat model. Subclasses set ``defaults`` and implement ``loss``."""

    defaults: ClassVar[dict[str, Any]] = {}
    registry_name: ClassVar[str] = ""
    #: Published settings by ``(dataset, norm)`` (see :mod:`defenses.presets`); ``rbc defend`` fills what the
    #: user did not give from them.
    presets: ClassVar[dict[tuple[str, str], Preset]] = {}
    #: One gradient step per batch for the inner maximisation (prone to catastrophic overfitting; monitored).
    single_step: ClassVar[bool] = False
    #: Detached logits of the last batch (clean or adversarial): the loop's training accuracy.
    last_logits: torch.Tensor | None = None

    def __init__(self, threat: ThreatModel | str, **params: Any) -> None:
        self.threat = threat if isinstance(threat, ThreatModel) else ThreatModel.parse_ball(str(threat))
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"invalid parameter(s) {', '.join(unknown)} for defense {self.name!r}: accepted: {accepted}"
            )
        check_norm(self.threat, self.name)
        given = {k: v for k, v in params.items() if v is not None}
        self.p: dict[str, Any] = self.resolve({**self.defaults, **given})

    @property
    def name(self) -> str:
        return self.registry_name or type(self).__name__.lower()

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults that depend on the threat (e.g. ``alpha``) and validate; returns the full set."""
        return params

    def params(self) -> dict[str, Any]:
        """Every hyper-parameter, resolved and JSON-serialisable (recorded in the model card)."""
        return {"threat": str(self.threat), **self.p}

    def callbacks(self, config: TrainConfig) -> list[EpochCallback]:
        return []

    def report(self) -> dict[str, Any]:
        return {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def ramped_threat(self, ctx: StepContext, ramp_epochs: float) -> tuple[ThreatModel, float]:
        """The training ball at this step when epsilon grows linearly from 0 over the first ``ramp_epochs`` epochs
        (0: no ramp), and the fraction of epsilon reached (step sizes scale with it). A ramp lets PGD-AT at a
        large epsilon start learning (from scratch at MNIST eps 0.3 it may stall at chance:
        ``docs/measurements.md``)."""
        if ramp_epochs <= 0:
            return self.threat, 1.0
        fraction = min(1.0, (ctx.epoch + (ctx.step + 1) / max(ctx.steps_per_epoch, 1)) / ramp_epochs)
        return ThreatModel(self.threat.norm, self.threat.eps * fraction), fraction

    def adversarial_ce(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        ctx: StepContext,
        *,
        steps: int,
        alpha: float,
        start: str,
        threat: ThreatModel | None = None,
        clip_start: bool = True,
        start_threat: ThreatModel | None = None,
    ) -> torch.Tensor:
        """Cross-entropy on the PGD/FGSM maximiser of the cross-entropy (PGD-AT, FGSM-RS), in train mode, in
        ``threat`` (default: the defense's own)."""
        x_adv = perturb(
            model,
            x,
            threat or self.threat,
            ce_objective(y),
            steps=steps,
            alpha=alpha,
            generator=ctx.generator,
            start=start,
            autocast=ctx.autocast,
            clip_start=clip_start,
            start_threat=start_threat,
        )
        return self.ce_on(model, x_adv, y, ctx)

    def ce_on(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """The training loss on the perturbed batch: cross-entropy, its logits kept for the training accuracy."""
        with ctx.autocast():
            logits = model(x_adv)
        self.last_logits = logits.detach()
        return F.cross_entropy(logits.float(), y)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def flag(params: dict[str, Any], name: str, who: str) -> None:
    """Validate ``params[name]`` as a boolean (see :func:`robustbench_cnn.core.types.parse_bool`: ``--defense-arg
    clip_start=False`` means False, not the truthy string); ``ValueError`` naming the defense."""
    try:
        params[name] = parse_bool(params[name])
    except ValueError:
        raise ValueError(f"invalid {name} {params[name]!r} for defense {who!r}: must be true or false") from None


def positive(params: dict[str, Any], name: str, who: str, integer: bool = False, allow_zero: bool = False) -> None:
    """Validate ``params[name]`` as a positive (or non-negative) number; ``ValueError`` naming the defense."""
    value = params[name]
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"invalid {name} {value!r} for defense {who!r}: must be {kind} {bound}")
    params[name] = int(value) if integer else float(value)
