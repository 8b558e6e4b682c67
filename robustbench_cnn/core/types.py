"""Core value types shared by every layer: norms, threat models and attack results.

``ThreatModel.parse`` is the one place where strings become threat models.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from robustbench_cnn.core.corruption_threat import CorruptionThreat
    from robustbench_cnn.core.patch_threat import PatchThreat


class Norm(str, enum.Enum):
    """The distance in which a perturbation is measured."""

    LINF = "linf"
    L2 = "l2"
    L1 = "l1"
    L0 = "l0"

    @classmethod
    def parse(cls, text: str) -> Norm:
        key = text.strip().lower().replace("_", "").replace("-", "")
        aliases = {
            "linf": cls.LINF,
            "inf": cls.LINF,
            "l∞": cls.LINF,
            "l2": cls.L2,
            "2": cls.L2,
            "l1": cls.L1,
            "1": cls.L1,
            "l0": cls.L0,
            "0": cls.L0,
        }
        if key not in aliases:
            raise ValueError(f"invalid norm {text!r}: use one of linf, l2, l1, l0")
        return aliases[key]

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of a batch of perturbations ``delta`` (N x ...)."""
        flat = delta.detach().flatten(1).float()
        if self is Norm.LINF:
            return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
        if self is Norm.L2:
            return flat.norm(p=2, dim=1)
        if self is Norm.L1:
            return flat.abs().sum(dim=1)
        return (flat != 0).sum(dim=1).float()


_EPS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?:/\s*([0-9]*\.?[0-9]+))?\s*$", re.I)


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def parse_bool(value: Any) -> bool:
    """A boolean from a bool, 0/1 or true/false/yes/no/on/off in any case (``KEY=False`` on the command line
    arrives as the string 'False', which plain ``bool()`` would call true); ``ValueError`` otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise ValueError(f"{value!r} must be true or false")
    return text in _TRUE


def parse_eps(text: str | float | int) -> float:
    """Parse one epsilon: ``0.3``, ``8/255`` or ``1e-2``; must be finite and >= 0."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _EPS_RE.match(str(text))
        if not match:
            raise ValueError(f"invalid epsilon {text!r}: use a number like 0.3, 8/255 or 1e-2")
        num, den = match.groups()
        if den is not None and float(den) == 0:
            raise ValueError(f"invalid epsilon {text!r}: division by zero")
        value = float(num) / float(den) if den else float(num)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid epsilon {text!r}: must be a finite number >= 0")
    return value


def parse_eps_list(text: str) -> list[float]:
    """Parse a comma-separated list of epsilons into a sorted, de-duplicated list."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError(f"invalid epsilon list {text!r}: give at least one value, e.g. 0,0.1,0.3")
    return sorted({parse_eps(p) for p in parts})


def format_eps(eps: float) -> str:
    """Human form of an epsilon: ``8/255`` when it is a small fraction of 255, else a decimal."""
    frac = Fraction(eps).limit_denominator(255)
    if eps > 0 and frac.denominator == 255 and abs(float(frac) - eps) < 1e-9:
        return f"{frac.numerator}/255"
    return f"{eps:g}"


#: Every spelling :meth:`ThreatModel.parse` accepts, for error messages.
THREAT_FORMS = (
    "NORM:EPS such as linf:8/255 or l2:0.5, or a corruption threat: corruption:NAME:SEVERITY (e.g. "
    "corruption:fog:3), corruption:NAME, corruptions or corruptions:SEVERITY, or a patch threat: patch:AREA "
    "(e.g. patch:0.1)"
)


@dataclass(frozen=True)
class ThreatModel:
    """A norm ball: perturbations ``delta`` with ``||delta||_norm <= eps`` and ``x + delta`` in [0, 1]."""

    norm: Norm
    eps: float

    def __post_init__(self) -> None:
        if not isinstance(self.norm, Norm):
            object.__setattr__(self, "norm", Norm.parse(str(self.norm)))
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"invalid epsilon {self.eps!r}: must be a finite number >= 0")
        if self.norm is Norm.LINF and self.eps > 1:
            raise ValueError(f"invalid epsilon {self.eps!r} for linf: images are in [0, 1], so eps <= 1")

    @classmethod
    def parse(cls, text: str, eps: float | str | None = None) -> ThreatModel | CorruptionThreat | PatchThreat:
        """The one place a threat string becomes a value.

        ``"linf:8/255"``, ``"l2:0.5"``, or ``"linf"`` with ``eps`` given separately: a norm ball
        (:class:`ThreatModel`). ``"corruption:fog:3"``, ``"corruption:fog"``, ``"corruptions"`` or
        ``"corruptions:3"``: a common-corruption threat, delegated to
        :meth:`~robustbench_cnn.core.corruption_threat.CorruptionThreat.parse` (returns a
        :class:`~robustbench_cnn.core.corruption_threat.CorruptionThreat`; ``eps`` must not be given).
        ``"patch:0.1"``: an adversarial patch of at most that fraction of the image, delegated to
        :meth:`~robustbench_cnn.core.patch_threat.PatchThreat.parse` (``eps`` must not be given). Anything
        else raises ``ValueError`` listing every accepted form.
        """
        from robustbench_cnn.core.corruption_threat import CorruptionThreat
        from robustbench_cnn.core.patch_threat import PatchThreat

        head = str(text).strip().lower().split(":", 1)[0].strip()
        if head == "patch":
            if eps is not None:
                raise ValueError(f"invalid threat {text!r}: a patch threat takes no epsilon (its area is patch:AREA)")
            return PatchThreat.parse(str(text))
        if head in ("corruption", "corruptions"):
            if eps is not None:
                raise ValueError(f"invalid threat {text!r}: a corruption threat takes no epsilon")
            try:
                return CorruptionThreat.parse(str(text))
            except ValueError as exc:
                raise ValueError(f"{str(exc).split('; use ')[0].split(': use ')[0]}: use {THREAT_FORMS}") from None
        norm_text, _, eps_text = str(text).partition(":")
        if not eps_text and eps is None:
            raise ValueError(f"invalid threat model {text!r}: use {THREAT_FORMS}")
        try:
            norm = Norm.parse(norm_text)
        except ValueError as exc:
            raise ValueError(f"invalid threat model {text!r} ({exc}): use {THREAT_FORMS}") from None
        return cls(norm, parse_eps(eps_text if eps_text else eps))  # type: ignore[arg-type]

    @classmethod
    def parse_ball(cls, text: str, eps: float | str | None = None) -> ThreatModel:
        """:meth:`parse` for a caller that needs a norm ball: a corruption or patch threat raises ``ValueError``."""
        threat = cls.parse(text, eps)
        if not isinstance(threat, ThreatModel):
            raise ValueError(f"invalid threat model {text!r}: this needs a norm ball NORM:EPS such as linf:8/255")
        return threat

    @classmethod
    def parse_curve(cls, text: str, eps: str | Sequence[float | str] | None = None) -> list[ThreatModel]:
        """The threat models of a robustness curve, in ascending epsilon: the one place where a command's
        ``--threat``/``--eps`` (or a plan's norm and eps list) become threat models.

        ``text`` is ``NORM`` or ``NORM:EPS``; ``eps`` a comma-separated list (``"0,0.1,8/255"``) or a sequence of
        numbers/strings; without ``eps`` the epsilon of ``text`` is the whole curve. Each epsilon is validated
        for the norm here, once (``ValueError`` naming the accepted forms).
        """
        norm_text, _, eps_text = str(text).partition(":")
        norm = Norm.parse(norm_text)
        if eps is None or (isinstance(eps, str) and not eps.strip()):
            if not eps_text:
                raise ValueError(f"give epsilons for {norm.value} (e.g. --eps 0,0.1,0.3) or the threat as NORM:EPS")
            values = [parse_eps(eps_text)]
        elif isinstance(eps, str):
            values = parse_eps_list(eps)
        else:
            values = sorted({parse_eps(e) for e in eps})
            if not values:
                raise ValueError("invalid epsilon list []: give at least one value, e.g. 0,0.1,0.3")
        return [cls(norm, value) for value in values]

    def with_eps(self, eps: float) -> ThreatModel:
        return ThreatModel(self.norm, eps)

    def linf_box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-pixel bounds ``(lo, hi)`` of the linf ball around ``x`` intersected with [0, 1] (None for other
        norms): clamping to them is the exact projection, one op per step instead of four."""
        if self.norm is not Norm.LINF:
            return None
        eps = float(self.eps)
        return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)

    def __str__(self) -> str:
        return f"{self.norm.value}:{format_eps(self.eps)}"


@dataclass
class AttackResult:
    """What one attack run on a batch returns. ``robust_accuracy`` is derived, never stored.

    - ``success[i]``: the attack changed a correctly classified point's prediction (untargeted)
      or made it the target (targeted). Points the model already misclassifies are never attacked:
      ``clean_correct[i]`` is False and ``success[i]`` is False.
    - ``target[i]``: the target class, or -1 when untargeted.
    - ``queries[i]``: model queries spent on the sample (black-box attacks), else 0.
    - ``mask``: for a patch threat, where each point's patch lies (bool N x 1 x H x W; all False for a point not
      attacked); None for a norm ball. ``perturbation_norm`` is then the fraction of pixels changed.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    clean_correct: torch.Tensor
    perturbation_norm: torch.Tensor
    pred_adv: torch.Tensor
    target: torch.Tensor
    queries: torch.Tensor
    threat: ThreatModel | PatchThreat
    attack: str
    elapsed_s: float = 0.0
    params: dict = field(default_factory=dict)
    mask: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.success.numel())

    @property
    def targeted(self) -> bool:
        return bool((self.target >= 0).any())

    @property
    def robust(self) -> torch.Tensor:
        """Per-sample robustness: correct on the clean input and not broken by the attack."""
        return self.clean_correct & ~self.success

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.n else float("nan")

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean()) if self.n else float("nan")

    @property
    def attacked(self) -> torch.Tensor:
        """The points the attack ran on: clean-correct and, when targeted, with a target other than the label
        (a point already of its target class is skipped and stays robust)."""
        if not self.targeted:
            return self.clean_correct
        # a skipped point keeps its clean prediction, its label, which is its target; an attacked point that
        # ends on its target is a success, so "on target without success" identifies exactly the skipped ones
        skipped = ~self.success & (self.pred_adv == self.target)
        return self.clean_correct & ~skipped

    @property
    def success_rate(self) -> float:
        """Success among the points that were attacked (:attr:`attacked`)."""
        attacked = int(self.attacked.sum())
        return float(self.success.sum()) / attacked if attacked else float("nan")
