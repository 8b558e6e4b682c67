"""Where a patch goes on an image: exact pasting at pixel positions, and the random print-and-capture
transformations a universal patch is trained under (expectation over transformation).

- :func:`random_positions`: seeded top-left corners, uniform over every position where the patch fits;
- :func:`paste`: the patch (one for all images, or one per image) pasted exactly, and its mask;
- :func:`eot_apply`: the patch printed and captured (brightness, contrast and noise), scaled, rotated and placed
  at a random position with bilinear sampling, differentiable in the patch (Athalye, Engstrom, Ilyas & Kwok,
  "Synthesizing Robust Adversarial Examples", ICML 2018; Brown et al., "Adversarial Patch", 2017).

Randomness comes only from the ``torch.Generator`` passed in; inputs are never modified in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["EotRanges", "eot_apply", "paste", "random_positions"]


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` draws from U(low, high) on ``device``, taken from ``generator`` (which may live on the CPU)."""
    u = torch.rand(n, generator=generator, device=generator.device).to(device)
    return low + (high - low) * u


def random_positions(
    n: int, side: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners ``(top[n], left[n])`` (int64) of a ``side x side`` patch, uniform over the
    ``(H - side + 1) x (W - side + 1)`` positions where it lies wholly inside the image."""
    top = torch.randint(0, height - side + 1, (n,), generator=generator, device=generator.device).to(device)
    left = torch.randint(0, width - side + 1, (n,), generator=generator, device=generator.device).to(device)
    return top, left


def paste(
    x: torch.Tensor, patch: torch.Tensor, top: torch.Tensor, left: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N x C x H x W) with ``patch`` (C x s x s, shared, or N x C x s x s, one per image) pasted with its
    top-left corner at ``(top[i], left[i])``, and the mask of the pasted pixels (bool N x 1 x H x W). Exact
    (no interpolation) and differentiable in ``patch``."""
    n, _, height, width = x.shape
    side = patch.shape[-1]
    rows = torch.arange(height, device=x.device)[None, :] - top[:, None]  # N x H: row inside the patch
    cols = torch.arange(width, device=x.device)[None, :] - left[:, None]
    inside_r, inside_c = (rows >= 0) & (rows < side), (cols >= 0) & (cols < side)
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]  # N x 1 x H x W
    r = rows.clamp(0, side - 1)[:, :, None].expand(n, height, width)
    c = cols.clamp(0, side - 1)[:, None, :].expand(n, height, width)
    if patch.dim() == 3:
        canvas = patch[:, r, c].permute(1, 0, 2, 3)  # C x N x H x W -> N x C x H x W
    else:
        canvas = patch[torch.arange(n, device=x.device)[:, None, None], :, r, c].permute(0, 3, 1, 2)
    return torch.where(mask, canvas.to(x.dtype), x), mask


@dataclass(frozen=True)
class EotRanges:
    """The ranges of the random transformations (each drawn uniformly, per image and draw).

    ``rotation``: degrees either way; ``scale``: relative change of the patch's side either way; ``brightness``:
    added to every patch pixel, either way; ``contrast``: relative change of the contrast about 0.5, either way;
    ``noise``: standard deviation of Gaussian pixel noise on the printed patch."""

    rotation: float = 15.0
    scale: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    noise: float = 0.02


def eot_apply(x: torch.Tensor, patch: torch.Tensor, ranges: EotRanges, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N x C x H x W) with ``patch`` (C x s x s) printed, captured and placed: per image a random
    brightness, contrast and pixel noise (the print-and-capture simulation, then clipped to [0, 1]), a random scale
    and rotation, and a random position where the transformed patch's bounding box lies inside the image (its
    centre when it is larger than the image). Bilinear sampling, differentiable in ``patch``; with no rotation, unit
    scale and a whole-pixel position it reproduces :func:`paste` exactly."""
    n, channels, height, width = x.shape
    side = patch.shape[-1]
    device = x.device
    printed = patch.unsqueeze(0).expand(n, -1, -1, -1)
    contrast = _uniform(n, 1 - ranges.contrast, 1 + ranges.contrast, generator, device).view(n, 1, 1, 1)
    brightness = _uniform(n, -ranges.brightness, ranges.brightness, generator, device).view(n, 1, 1, 1)
    noise = torch.randn(printed.shape, generator=generator, device=generator.device).to(device) * ranges.noise
    printed = ((printed - 0.5) * contrast + 0.5 + brightness + noise).clamp(0.0, 1.0)

    angle = _uniform(n, -ranges.rotation, ranges.rotation, generator, device) * (math.pi / 180)
    half = _uniform(n, 1 - ranges.scale, 1 + ranges.scale, generator, device) * (side / 2)  # half side, pixels
    cos, sin = angle.cos(), angle.sin()
    extent = half * (cos.abs() + sin.abs())  # half width of the rotated patch's bounding box
    centres = []
    for size in (width, height):
        room = (size / 2 - extent).clamp(min=0.0)  # the centre's freedom either side of the image centre
        centres.append(size / 2 + room * _uniform(n, -1.0, 1.0, generator, device))
    cx, cy = centres
    # output (image) normalized coordinates q -> input (patch) normalized coordinates u (align_corners=False):
    # pixel p = (q + 1) * S / 2, d = p - centre, u = R(-angle) d / half
    theta = torch.zeros(n, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos * (width / 2) / half, sin * (height / 2) / half
    theta[:, 1, 0], theta[:, 1, 1] = -sin * (width / 2) / half, cos * (height / 2) / half
    dx, dy = width / 2 - cx, height / 2 - cy
    theta[:, 0, 2], theta[:, 1, 2] = (cos * dx + sin * dy) / half, (-sin * dx + cos * dy) / half
    grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
    warped = F.grid_sample(printed, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = torch.ones(n, 1, side, side, device=device, dtype=x.dtype)
    cover = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x * (1 - cover) + warped  # ``warped`` is already weighted by the coverage (zeros outside the patch)
