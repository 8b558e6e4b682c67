"""The patch threat: an adversarial patch covering at most a fraction ``area`` of the image, parsed from one string.

``patch:0.1`` is a square patch of at most 10% of the image's pixels, anywhere in the image; inside it the pixels
may take any value in [0, 1], outside it none may change (Brown, Mané, Roy, Abadi & Gilmer, "Adversarial Patch",
2017). :meth:`PatchThreat.parse` is the one place these strings become values (:meth:`ThreatModel.parse` delegates
to it); :meth:`PatchThreat.parse_sizes` turns a command's ``--threat``/``--sizes`` into the sizes of a curve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["PATCH_FORMS", "PatchThreat"]

PATCH_FORMS = "patch:AREA with AREA the fraction of the image the patch covers, in (0, 1] (e.g. patch:0.1)"


_NUMBER_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?:(/)\s*([0-9]*\.?[0-9]+)|(%))?\s*$", re.I)


def _area(text: str | float | int) -> float:
    """An area fraction from ``0.1``, ``1/10`` or ``10%``: finite and in [0, 1] (``ValueError`` otherwise)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _NUMBER_RE.match(str(text))
        if not match or (match.group(2) and float(match.group(3)) == 0):
            raise ValueError(f"invalid patch area {text!r}: use {PATCH_FORMS}")
        num, _, den, percent = match.groups()
        value = float(num) / (float(den) if den else 100.0 if percent else 1.0)
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"invalid patch area {text!r}: a fraction of the image in [0, 1]; use {PATCH_FORMS}")
    return value


@dataclass(frozen=True)
class PatchThreat:
    """A square patch of at most ``area`` (a fraction in [0, 1]) of the image's pixels, at any position.

    On an ``H x W`` image the patch is :meth:`side` pixels wide: the largest square whose area does not exceed
    ``area * H * W`` (``patch:0.1`` on 28 x 28 MNIST: 8 x 8 = 64 pixels, 8.2%). ``area = 0`` is no patch at all.
    """

    area: float

    def __post_init__(self) -> None:
        if isinstance(self.area, bool) or not isinstance(self.area, (int, float)):
            raise ValueError(f"invalid patch area {self.area!r}: use {PATCH_FORMS}")
        if not math.isfinite(self.area) or not 0 <= self.area <= 1:
            raise ValueError(f"invalid patch area {self.area!r}: must be in [0, 1]; use {PATCH_FORMS}")
        object.__setattr__(self, "area", float(self.area))

    @classmethod
    def parse(cls, text: str) -> PatchThreat:
        """``patch:0.1`` (also ``patch:1/10`` and ``patch:10%``, any case); anything else raises ``ValueError``."""
        head, sep, rest = str(text).strip().partition(":")
        if head.strip().lower() != "patch" or not sep or not rest.strip():
            raise ValueError(f"invalid patch threat {text!r}: use {PATCH_FORMS}")
        return cls(_area(rest))

    @classmethod
    def parse_sizes(cls, text: str, sizes: str | Sequence[float | str] | None = None) -> list[PatchThreat]:
        """The patch threats of a success-against-area curve, ascending: ``text`` is ``patch`` or ``patch:AREA``;
        ``sizes`` a comma-separated list (``"0.05,0.1,0.2"``) or a sequence; without ``sizes`` the area of ``text``
        is the whole curve. Every size must be > 0 (``ValueError`` naming the accepted forms)."""
        head, sep, rest = str(text).strip().partition(":")
        if head.strip().lower() != "patch":
            raise ValueError(f"invalid patch threat {text!r}: use {PATCH_FORMS}")
        if sizes is None or (isinstance(sizes, str) and not sizes.strip()):
            if not rest.strip():
                raise ValueError("give patch sizes (e.g. --sizes 0.05,0.1,0.2) or the threat as patch:AREA")
            values = [_area(rest)]
        else:
            parts = [p for p in sizes.split(",") if p.strip()] if isinstance(sizes, str) else list(sizes)
            if not parts:
                raise ValueError(f"invalid patch sizes {sizes!r}: give at least one area, e.g. 0.05,0.1,0.2")
            values = sorted({_area(p) for p in parts})
        if values[0] <= 0:
            raise ValueError(f"invalid patch size {values[0]:g}: a patch must cover more than 0 of the image")
        return [cls(v) for v in values]

    def side(self, height: int, width: int) -> int:
        """The patch's side in pixels on an ``height x width`` image: ``floor(sqrt(area * H * W))``, at most
        ``min(H, W)`` (0 when not even one pixel fits the budget)."""
        budget = self.area * height * width
        side = math.isqrt(int(math.floor(budget + 1e-9)))
        return min(side, height, width)

    def covered(self, height: int, width: int) -> float:
        """The fraction of an ``height x width`` image the patch really covers (``side**2 / (H * W)`` <= area)."""
        return self.side(height, width) ** 2 / (height * width)

    @staticmethod
    def measure(delta: torch.Tensor) -> torch.Tensor:
        """Per-sample fraction of pixel positions (any channel) that a perturbation ``delta`` (N x C x H x W)
        changes: what a patch attack's ``perturbation_norm`` reports (at most :meth:`covered`)."""
        if delta.dim() != 4:
            raise ValueError(f"delta must be N x C x H x W, got {tuple(delta.shape)}")
        changed = (delta.detach() != 0).any(dim=1).flatten(1)
        return changed.float().mean(dim=1) if changed.shape[1] else changed.new_zeros(changed.shape[0]).float()

    def __str__(self) -> str:
        return f"patch:{self.area:g}"
