"""Common corruptions, generated locally and deterministically: CIFAR-10-C and MNIST-C (RobustBench's third track).

``corrupt(x, "fog", 3, seed=0)`` corrupts a batch ``x`` (N x C x H x W in [0, 1], 1 or 3 channels) and returns a
tensor of the same shape in [0, 1], quantised to 8 bits as the published ``.npy`` files are. Image ``i`` draws its
randomness from its own generator, seeded by ``(seed, indices[i], corruption)``: the same image gets the same
corruption whatever the batch it is in (pass its dataset index as ``indices``; :func:`corrupt_split` does), and the
same random draws at every severity (common random numbers: the severities of one image differ only by their
constants; each cell's distribution is the generators' own, which draw afresh per severity).

Two benchmarks, with the constants of their authors' generators (re-implemented here with numpy, scipy and PIL):

- ``cifar10-c`` (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
  Perturbations", ICLR 2019, https://arxiv.org/abs/1903.12261; ``make_cifar_c.py``): 15 corruptions x 5
  severities. ``frost`` blends a *synthetic* ice texture (a plasma fractal plus random crystal strokes) instead of
  crops of the six frost photographs CIFAR-10-C used, which are not shipped; the other 14 follow the definitions.
- ``mnist-c`` (Mu & Gilmer, "MNIST-C: A Robustness Benchmark for Computer Vision", 2019,
  https://arxiv.org/abs/1906.02337; ``corruptions.py``): 15 corruptions, each published at one severity
  (:attr:`Corruption.mnist_c_severity`); the ones with a 5-level table in the authors' code expose all 5 levels,
  ``stripe``, ``dotted_line``, ``zigzag`` and ``canny_edges`` have one.

A corruption that belongs to both benchmarks (``shot_noise``, ``impulse_noise``, ``glass_blur``, ``motion_blur``,
``brightness``, ``fog``) has each benchmark's constants; ``benchmark=None`` picks ``cifar10-c`` for 3-channel and
``mnist-c`` for 1-channel input; a corruption without constants for the chosen benchmark uses the ones it has
(``frost`` on MNIST uses CIFAR-10-C's, ``rotate`` on CIFAR-10 MNIST-C's). ImageMagick's motion blur (used by
both generators through Wand) is re-implemented as a one-sided Gaussian line kernel; other library calls
(skimage's gaussian and Canny, OpenCV's filters and affine warps) are replaced by scipy equivalents with the
same border modes. Images are never bit-identical to the published sets (their RNG streams differ).
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage

from robustbench_cnn.core.corruption_threat import CorruptionThreat
from robustbench_cnn.core.registry import Registry

if TYPE_CHECKING:
    from robustbench_cnn.data import Split

__all__ = [
    "BENCHMARKS",
    "CORRUPTIONS",
    "Corruption",
    "benchmark_cells",
    "benchmark_corruptions",
    "corrupt",
    "corrupt_split",
    "default_benchmark",
    "resolve_threat",
]

BENCHMARKS = ("cifar10-c", "mnist-c")

Image = np.ndarray  # H x W x C, float64 in [0, 1]
CorruptFn = Callable[[Image, Any, np.random.Generator], Image]


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``fn(image, params, rng)`` and its parameters per benchmark and severity."""

    name: str
    fn: CorruptFn
    #: benchmark -> one parameter value per severity (5 values, or 1 for corruptions without severities)
    params: dict[str, tuple[Any, ...]]
    #: the severity MNIST-C published (None: not an MNIST-C corruption)
    mnist_c_severity: int | None = None
    note: str = ""
    benchmarks: tuple[str, ...] = field(default=())

    def table(self, benchmark: str | None, channels: int) -> tuple[str, tuple[Any, ...]]:
        """The benchmark whose constants apply and its per-severity parameters: ``benchmark`` (default by
        ``channels``), or the table the corruption has when it has none for that benchmark."""
        chosen = benchmark or default_benchmark(channels)
        if chosen not in BENCHMARKS:
            raise ValueError(f"invalid corruption benchmark {chosen!r}: use one of {', '.join(BENCHMARKS)}")
        if chosen not in self.params:
            chosen = next(iter(self.params))
        return chosen, self.params[chosen]

    def severities(self, benchmark: str | None = None, channels: int = 3) -> int:
        return len(self.table(benchmark, channels)[1])


CORRUPTIONS: Registry[Corruption] = Registry("corruption")

#: The 15 corruptions of each benchmark, in the authors' order.
_BENCHMARK_NAMES: dict[str, tuple[str, ...]] = {
    "cifar10-c": (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    ),
    "mnist-c": (
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "shear",
        "scale",
        "rotate",
        "brightness",
        "translate",
        "stripe",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
        "canny_edges",
    ),
}


def _register(
    name: str, *, cifar: Sequence[Any] | None = None, mnist: Sequence[Any] | None = None, mnist_c: int | None = None
) -> Callable[[CorruptFn], CorruptFn]:
    def decorator(fn: CorruptFn) -> CorruptFn:
        params: dict[str, tuple[Any, ...]] = {}
        if cifar is not None:
            params["cifar10-c"] = tuple(cifar)
        if mnist is not None:
            params["mnist-c"] = tuple(mnist)
        doc = (fn.__doc__ or "").strip().splitlines()
        benchmarks = tuple(b for b in BENCHMARKS if name in _BENCHMARK_NAMES[b])
        CORRUPTIONS.register(name)(Corruption(name, fn, params, mnist_c, doc[0] if doc else "", benchmarks))
        return fn

    return decorator


def default_benchmark(channels: int) -> str:
    """``cifar10-c`` for colour images, ``mnist-c`` for grey ones."""
    return "cifar10-c" if channels == 3 else "mnist-c"


def benchmark_corruptions(benchmark: str) -> tuple[str, ...]:
    """The 15 corruption names of ``benchmark``."""
    if benchmark not in _BENCHMARK_NAMES:
        raise ValueError(f"invalid corruption benchmark {benchmark!r}: use one of {', '.join(BENCHMARKS)}")
    return _BENCHMARK_NAMES[benchmark]


def benchmark_cells(benchmark: str, *, all_severities: bool = False) -> list[tuple[str, int]]:
    """The (corruption, severity) cells whose mean accuracy the benchmark reports.

    ``cifar10-c``: 15 corruptions x severities 1-5 (RobustBench's mean corruption accuracy). ``mnist-c``: each of
    the 15 at the severity MNIST-C published (``all_severities=True``: every level its table has).
    """
    cells = []
    for name in benchmark_corruptions(benchmark):
        corruption = CORRUPTIONS.get(name)
        levels = len(corruption.params[benchmark])
        if benchmark == "mnist-c" and not all_severities:
            cells.append((name, corruption.mnist_c_severity or 1))
        else:
            cells.extend((name, s) for s in range(1, levels + 1))
    return cells


def resolve_threat(threat: CorruptionThreat | str, benchmark: str) -> list[tuple[str, int]]:
    """The (corruption, severity) cells a :class:`CorruptionThreat` names, for ``benchmark``: ``corruptions``
    is the benchmark's cells (:func:`benchmark_cells`), ``corruption:fog`` every severity of fog,
    ``corruption:fog:3`` one cell; unknown names raise :class:`~robustbench_cnn.core.errors.UnknownNameError`."""
    threat = threat if isinstance(threat, CorruptionThreat) else CorruptionThreat.parse(threat)
    if threat.is_all:
        cells = benchmark_cells(benchmark, all_severities=threat.severity is not None)
        return [c for c in cells if threat.severity is None or c[1] == threat.severity]
    corruption = CORRUPTIONS.get(threat.name)
    _, table = corruption.table(benchmark, 3)
    levels = range(1, len(table) + 1)
    if threat.severity is not None:
        _check_severity(corruption.name, threat.severity, len(table))
        return [(corruption.name, threat.severity)]
    return [(corruption.name, s) for s in levels]


def _check_severity(name: str, severity: int, levels: int) -> None:
    if not isinstance(severity, int) or isinstance(severity, bool) or not 1 <= severity <= levels:
        accepted = "1" if levels == 1 else f"1 to {levels}"
        raise ValueError(f"invalid severity {severity!r} for corruption {name!r}: use {accepted}")


def _image_rng(seed: int, index: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), zlib.crc32(name.encode())]))


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int,
    seed: int = 0,
    *,
    benchmark: str | None = None,
    indices: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Corrupt a batch of images with corruption ``name`` at ``severity`` (1-based).

    Args:
        x: float images N x C x H x W in [0, 1], C = 1 or 3 (not modified).
        name: a registered corruption (``CORRUPTIONS.list()``).
        severity: 1 to 5 (1 for ``stripe``, ``dotted_line``, ``zigzag``, ``canny_edges``).
        seed: seeds every image's generator together with its index and the corruption's name.
        benchmark: whose constants to use, ``cifar10-c`` or ``mnist-c`` (default by channels, see the module).
        indices: one integer per image for its generator (default ``0..N-1``): pass dataset indices to make an
            image's corruption independent of the batch.

    Returns a float32 tensor of ``x``'s shape, device and dtype in [0, 1] (multiples of 1/255).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor N x C x H x W with 1 or 3 channels, got {shape}")
    if not x.is_floating_point() or (x.numel() and (x.min() < 0 or x.max() > 1 or not torch.isfinite(x).all())):
        raise ValueError("x must be a float tensor in [0, 1]")
    corruption = CORRUPTIONS.get(name)
    _, table = corruption.table(benchmark, int(x.shape[1]))
    _check_severity(corruption.name, severity, len(table))
    params = table[severity - 1]
    n = int(x.shape[0])
    index = (
        [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
        if indices is not None
        else list(range(n))
    )
    if len(index) != n:
        raise ValueError(f"indices must have one entry per image ({n}), got {len(index)}")
    images = x.detach().cpu().double().permute(0, 2, 3, 1).numpy()
    out = np.empty_like(images)
    for i in range(n):
        rng = _image_rng(seed, index[i], corruption.name)
        result = np.asarray(corruption.fn(images[i].copy(), params, rng), dtype=np.float64)
        out[i] = np.round(np.clip(result.reshape(images[i].shape), 0.0, 1.0) * 255.0) / 255.0
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(device=x.device, dtype=x.dtype)


def corrupt_split(
    split: Split, name: str, severity: int, seed: int = 0, *, benchmark: str | None = None
) -> torch.Tensor:
    """:func:`corrupt` of a :class:`~robustbench_cnn.data.Split`'s images, each seeded by its dataset index."""
    return corrupt(split.x, name, severity, seed, benchmark=benchmark, indices=split.index)


# ------------------------------------------------------------------------------------------------ helpers
def _gaussian(img: Image, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Image:
    """skimage's ``gaussian`` (channels not mixed): scipy's filter with the same default border."""
    if sigma <= 0:
        return img
    sig = (sigma, sigma) + (0.0,) * (img.ndim - 2)
    return ndimage.gaussian_filter(img, sigma=sig, mode=mode, truncate=truncate)


def _gray(img: Image) -> np.ndarray:
    """Luma (ITU-R 601, OpenCV's RGB2GRAY) of an H x W x C image, H x W."""
    if img.shape[2] == 1:
        return img[..., 0]
    return img @ np.array([0.299, 0.587, 0.114])


def _to_uint8(img: Image) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def _zoom_center(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` (bilinear) keeping the size: the centre crop of size/factor, scaled."""
    out = img
    for axis in (0, 1):
        size = img.shape[axis]
        crop = int(math.ceil(size / factor))
        top = (size - crop) // 2
        out = np.take(out, range(top, top + crop), axis=axis)
    zoom = (factor, factor) + (1.0,) * (img.ndim - 2)
    out = ndimage.zoom(out, zoom, order=1)
    for axis in (0, 1):
        size = img.shape[axis]
        trim = (out.shape[axis] - size) // 2
        out = np.take(out, range(trim, trim + size), axis=axis)
    return out


def _plasma(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A square diamond-square height map (side ``size``, a power of two) scaled to [0, 1].

    The amplitude of the random offsets starts at 100 * U(-100, 100) and is divided by ``decay`` at each halving
    of the step, as in the fog of both generators.
    """
    grid = np.zeros((size, size))
    step, amplitude = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        # square step: centre of each square = mean of its 4 corners (wrapping) + noise
        total = corners + np.roll(corners, -1, axis=0)
        total = total + np.roll(total, -1, axis=1)
        grid[half:size:step, half:size:step] = total / 4 + amplitude * rng.uniform(-amplitude, amplitude, total.shape)
        # diamond step: edge midpoints = mean of the 2 adjacent corners and 2 adjacent centres + noise
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:size:step, half:size:step] = top / 4 + amplitude * rng.uniform(-amplitude, amplitude, top.shape)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:size:step, 0:size:step] = left / 4 + amplitude * rng.uniform(-amplitude, amplitude, left.shape)
        step, amplitude = half, amplitude / decay
    grid -= grid.min()
    return grid / max(grid.max(), 1e-12)


def _motion_kernel_blur(layer: np.ndarray, radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """ImageMagick's ``-motion-blur radiusxsigma+angle`` on an H x W (x C) array: each pixel becomes the
    Gaussian-weighted mean (weights ``exp(-i^2 / 2 sigma^2)``, ``i = 0 .. 2 radius``) of the pixels ``i`` steps
    behind it along ``angle`` (edge pixels repeat beyond the border)."""
    width = 2 * int(math.ceil(radius)) + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2.0 * sigma**2))
    weights /= weights.sum()
    theta = math.radians(angle_deg)
    h, w = layer.shape[:2]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.zeros_like(layer, dtype=np.float64)
    for i, weight in enumerate(weights):
        dr, dc = int(round(i * math.sin(theta))), int(round(i * math.cos(theta)))
        src = layer[np.clip(rows - dr, 0, h - 1), np.clip(cols - dc, 0, w - 1)]
        out += weight * src
    return out


def _affine_warp(img: Image, matrix: np.ndarray, offset: np.ndarray, mode: str = "constant") -> Image:
    """Output pixel (row, col) = input at ``matrix @ (col, row) + offset`` (x, y order), bilinear, per channel."""
    h, w = img.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = matrix[0, 0] * cols + matrix[0, 1] * rows + offset[0]
    src_y = matrix[1, 0] * cols + matrix[1, 1] * rows + offset[1]
    channels = [
        ndimage.map_coordinates(img[..., c], [src_y, src_x], order=1, mode=mode, cval=0.0) for c in range(img.shape[2])
    ]
    return np.stack(channels, axis=-1)


def _about_centre(img: Image, matrix: np.ndarray) -> Image:
    """Warp with ``matrix`` (x, y order) keeping the image centre fixed; zeros outside (skimage's ``warp``)."""
    h, w = img.shape[:2]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return _affine_warp(img, matrix, centre - matrix @ centre)


def _line_mask(h: int, w: int, c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """MNIST-C's anti-aliased line from (col c0, row r0) to (c1, r1): intensity ``1 + log(1 - d / 2.3)`` at
    vertical distance ``d`` < 2.3 from it, between columns floor(c0) and ceil(c1); none for a vertical line."""
    if c1 == c0:
        return np.zeros((h, w))
    cols, rows = np.arange(w)[None, :].astype(np.float64), np.arange(h)[:, None].astype(np.float64)
    slope = (r1 - r0) / (c1 - c0)
    dist = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, 2.3 - 1e-10)
    mask = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    mask[:, : max(int(math.floor(c0)), 0)] = 0
    mask[:, max(int(math.ceil(c1)), 0) :] = 0
    return mask


def _per_channel(fn: Callable[[np.ndarray], np.ndarray], img: Image) -> Image:
    return np.stack([fn(img[..., c]) for c in range(img.shape[2])], axis=-1)


# ---------------------------------------------------------------------------------------------- noise
@_register("gaussian_noise", cifar=[0.04, 0.06, 0.08, 0.09, 0.10])
def _gaussian_noise(img: Image, scale: float, rng: np.random.Generator) -> Image:
    """Additive Gaussian noise of standard deviation ``scale``."""
    return img + rng.normal(scale=scale, size=img.shape)


@_register("shot_noise", cifar=[500, 250, 100, 75, 50], mnist=[60, 25, 12, 5, 3], mnist_c=5)
def _shot_noise(img: Image, photons: float, rng: np.random.Generator) -> Image:
    """Poisson (shot) noise: ``Poisson(x * photons) / photons``."""
    return rng.poisson(img * photons) / float(photons)


@_register("impulse_noise", cifar=[0.01, 0.02, 0.03, 0.05, 0.07], mnist=[0.03, 0.06, 0.09, 0.17, 0.27], mnist_c=4)
def _impulse_noise(img: Image, amount: float, rng: np.random.Generator) -> Image:
    """Salt-and-pepper noise: a fraction ``amount`` of the values set to 0 or 1 (even odds; skimage's ``s&p``)."""
    hit = rng.random(img.shape) < amount
    salt = rng.random(img.shape) < 0.5
    out = img.copy()
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


# ----------------------------------------------------------------------------------------------- blur
@_register(
    "defocus_blur",
    cifar=[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)],
)
def _defocus_blur(img: Image, p: tuple[float, float], rng: np.random.Generator) -> Image:
    """Convolution with a disk of radius ``p[0]`` anti-aliased by a 3 x 3 Gaussian of sigma ``p[1]``."""
    radius, alias = p
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-math.ceil(radius), math.ceil(radius) + 1)
    xx, yy = np.meshgrid(span, span)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias**2))
    taps /= taps.sum()
    kernel = ndimage.correlate1d(ndimage.correlate1d(disk, taps, axis=0, mode="mirror"), taps, axis=1, mode="mirror")
    return _per_channel(lambda ch: ndimage.correlate(ch, kernel, mode="mirror"), img)


@_register(
    "glass_blur",
    cifar=[(0.05, 1, 1, 1.0), (0.25, 1, 1, 1.0), (0.4, 1, 1, 1.0), (0.25, 1, 2, 1.0), (0.4, 1, 2, 1.0)],
    mnist=[(0.7, 1, 2, 0.5), (0.9, 2, 1, 0.5), (1.0, 2, 3, 0.5), (1.1, 3, 2, 0.5), (1.5, 4, 2, 0.5)],
    mnist_c=1,
)
def _glass_blur(img: Image, p: tuple[float, int, int, float], rng: np.random.Generator) -> Image:
    """Gaussian blur (sigma ``p[0]``), then ``p[2]`` passes of swapping each pixel with a random neighbour at most
    ``p[1]`` away (each swap made with probability ``p[3]``: 1 in CIFAR-10-C, 1/2 in MNIST-C), blur again."""
    sigma, delta, passes, swap_prob = p
    h, w = img.shape[:2]
    out = _to_uint8(_gaussian(img, sigma)).astype(np.float64) / 255.0  # the generators round to 8 bits here
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    # every draw up front (one pass after another, rows and columns descending, as the swaps are made)
    offsets = rng.integers(-delta, delta, size=(passes, len(rows), len(cols), 2)).tolist()
    swaps = (rng.random((passes, len(rows), len(cols))) < swap_prob).tolist()
    pixels = [[list(out[r, c]) for c in range(w)] for r in range(h)]  # python lists: fast single swaps
    for k in range(passes):
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if swaps[k][i][j]:
                    dc, dr = offsets[k][i][j]
                    r2, c2 = r + dr, c + dc
                    pixels[r][c], pixels[r2][c2] = pixels[r2][c2], pixels[r][c]
    return _gaussian(np.array(pixels, dtype=np.float64), sigma)


@_register(
    "motion_blur",
    cifar=[(6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5)],
    mnist=[(10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0)],
    mnist_c=1,
)
def _motion_blur(img: Image, p: tuple[float, float], rng: np.random.Generator) -> Image:
    """Motion blur of radius ``p[0]`` and sigma ``p[1]`` at an angle drawn from U(-45, 45) degrees."""
    return _motion_kernel_blur(img, p[0], p[1], rng.uniform(-45, 45))


@_register(
    "zoom_blur",
    cifar=[(1.0, 1.06, 0.01), (1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.01), (1.0, 1.26, 0.01)],
)
def _zoom_blur(img: Image, p: tuple[float, float, float], rng: np.random.Generator) -> Image:
    """The mean of the image and its centre zooms by factors ``arange(*p)``."""
    factors = np.arange(*p)
    total = img.copy()
    for factor in factors:
        total += _zoom_center(img, float(factor))
    return total / (len(factors) + 1)


# -------------------------------------------------------------------------------------------- weather
@_register(
    "snow",
    cifar=[
        (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
)
def _snow(img: Image, p: tuple, rng: np.random.Generator) -> Image:
    """Snowflakes: thresholded zoomed Gaussian noise, motion-blurred at U(-135, -45) degrees, added twice (the
    layer and its 180-degree rotation) to the image brightened toward ``1.5 * luma + 0.5``."""
    loc, scale, zoom, threshold, radius, sigma, keep = p
    h, w = img.shape[:2]
    layer = rng.normal(loc=loc, scale=scale, size=(h, w))
    layer = _zoom_center(layer, zoom)
    layer[layer < threshold] = 0
    layer = _to_uint8(np.clip(layer, 0, 1)).astype(np.float64) / 255.0
    layer = _motion_kernel_blur(layer, radius, sigma, rng.uniform(-135, -45))[..., None]
    bright = np.maximum(img, _gray(img)[..., None] * 1.5 + 0.5)
    base = keep * img + (1 - keep) * bright
    return base + layer + np.rot90(layer, k=2)


def _frost_texture(h: int, w: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic frost layer in [0, 1]: a soft plasma cloud plus short bright random crystal strokes."""
    size = 1 << max(int(math.ceil(math.log2(max(h, w)))), 1)
    cloud = _plasma(size, 1.5, rng)[:h, :w]
    strokes = np.zeros((h, w))
    for _ in range(max(6, (h * w) // 64)):
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        angle, length = rng.uniform(0, math.pi), rng.uniform(2, max(h, w) / 4)
        for t in np.linspace(0, length, int(length * 2) + 2):
            r, c = int(r0 + t * math.sin(angle)), int(c0 + t * math.cos(angle))
            if 0 <= r < h and 0 <= c < w:
                strokes[r, c] = 1.0
    strokes = _gaussian(strokes, 0.5)
    texture = np.clip(0.45 + 0.35 * cloud + 0.6 * strokes, 0, 1)
    tint = np.array([0.92, 0.96, 1.0]) if channels == 3 else np.ones(1)
    return texture[..., None] * tint


@_register("frost", cifar=[(1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)])
def _frost(img: Image, p: tuple[float, float], rng: np.random.Generator) -> Image:
    """``p[0] * x + p[1] * frost`` with a synthetic frost texture (CIFAR-10-C crops six photographs)."""
    h, w, channels = img.shape
    return p[0] * img + p[1] * _frost_texture(h, w, channels, rng)


@_register(
    "fog",
    cifar=[(0.2, 3.0, 32), (0.5, 3.0, 32), (0.75, 2.5, 32), (1.0, 2.0, 32), (1.5, 1.75, 32)],
    mnist=[(1.5, 2.0, 256), (2.0, 2.0, 256), (2.5, 1.7, 256), (2.5, 1.5, 256), (3.0, 1.4, 256)],
    mnist_c=5,
)
def _fog(img: Image, p: tuple[float, float, int], rng: np.random.Generator) -> Image:
    """Fog: ``p[0]`` times a plasma fractal (decay ``p[1]``, side ``p[2]``, cropped) added, then the image
    rescaled by ``max / (max + p[0])``."""
    strength, decay, mapsize = p
    h, w = img.shape[:2]
    side = max(int(mapsize), 1 << int(math.ceil(math.log2(max(h, w)))))
    peak = img.max()
    fogged = img + strength * _plasma(side, decay, rng)[:h, :w, None]
    return fogged * peak / (peak + strength)


# -------------------------------------------------------------------------------------------- digital
@_register("brightness", cifar=[0.05, 0.1, 0.15, 0.2, 0.3], mnist=[0.1, 0.2, 0.3, 0.4, 0.5], mnist_c=5)
def _brightness(img: Image, amount: float, rng: np.random.Generator) -> Image:
    """HSV value raised by ``amount`` (clipped to 1), hue and saturation kept: each pixel's colour is scaled by
    ``V' / V`` (grey images: ``x + amount``)."""
    value = img.max(axis=2, keepdims=True)
    raised = np.clip(value + amount, 0, 1)
    scaled = img * np.divide(raised, value, out=np.zeros_like(value), where=value > 0)
    return np.where(value > 0, scaled, raised)


@_register("contrast", cifar=[0.75, 0.5, 0.4, 0.3, 0.15])
def _contrast(img: Image, factor: float, rng: np.random.Generator) -> Image:
    """Each channel pulled toward its mean: ``(x - mean) * factor + mean``."""
    mean = img.mean(axis=(0, 1), keepdims=True)
    return (img - mean) * factor + mean


@_register(
    "elastic_transform",
    cifar=[(0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
)
def _elastic_transform(img: Image, p: tuple[float, float, float], rng: np.random.Generator) -> Image:
    """A random affine map (3 anchor points moved by up to ``p[2] * size``, reflected border), then a smooth random
    displacement field (uniform noise blurred with sigma ``p[1] * size``, scaled by ``p[0] * size``)."""
    h, w = img.shape[:2]
    size = float(min(h, w))
    alpha, sigma, jitter = p[0] * size, p[1] * size, p[2] * size
    centre, half = np.array([w // 2, h // 2], dtype=np.float64), float(min(h, w) // 3)
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape)
    # the affine map sending src to dst (x, y order); the warp reads the input at its inverse
    forward = np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst).T  # 2 x 3
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    warped = _affine_warp(img, inverse[:, :2], inverse[:, 2], mode="mirror")
    dx = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = [rows + dy, cols + dx]
    return _per_channel(lambda ch: ndimage.map_coordinates(ch, coords, order=1, mode="reflect"), warped)


def _pil_roundtrip(img: Image, fn: Callable[[Any], Any]) -> Image:
    from PIL import Image as PILImage

    data = _to_uint8(img)
    pil = PILImage.fromarray(data[..., 0], mode="L") if data.shape[2] == 1 else PILImage.fromarray(data, mode="RGB")
    result = np.asarray(fn(pil), dtype=np.float64) / 255.0
    return result.reshape(img.shape)


@_register("pixelate", cifar=[0.95, 0.9, 0.85, 0.75, 0.65])
def _pixelate(img: Image, factor: float, rng: np.random.Generator) -> Image:
    """Box-downsampled to ``factor`` of the size and box-upsampled back (PIL)."""
    from PIL import Image as PILImage

    h, w = img.shape[:2]
    small = (max(int(w * factor), 1), max(int(h * factor), 1))
    return _pil_roundtrip(img, lambda im: im.resize(small, PILImage.BOX).resize((w, h), PILImage.BOX))


@_register("jpeg_compression", cifar=[80, 65, 58, 50, 40])
def _jpeg_compression(img: Image, quality: int, rng: np.random.Generator) -> Image:
    """JPEG encoding at ``quality`` (PIL), decoded."""
    from PIL import Image as PILImage

    def roundtrip(im: Any) -> Any:
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=int(quality))
        buffer.seek(0)
        return PILImage.open(buffer).convert(im.mode)

    return _pil_roundtrip(img, roundtrip)


# ------------------------------------------------------------------------------------- MNIST-C geometry
def _random_sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


@_register("shear", mnist=[0.2, 0.4, 0.6, 0.8, 1.0], mnist_c=2)
def _shear(img: Image, angle: float, rng: np.random.Generator) -> Image:
    """Shear by ``angle`` radians (random sign) about the centre: skimage's ``AffineTransform(shear=...)``."""
    s = angle * _random_sign(rng)
    return _about_centre(img, np.array([[1.0, -math.sin(s)], [0.0, math.cos(s)]]))


@_register("rotate", mnist=[0.2, 0.4, 0.6, 0.8, 1.0], mnist_c=2)
def _rotate(img: Image, angle: float, rng: np.random.Generator) -> Image:
    """Rotation by ``angle`` radians (random sign) about the centre."""
    a = angle * _random_sign(rng)
    return _about_centre(img, np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]))


@_register("scale", mnist=[1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5], mnist_c=3)
def _scale(img: Image, factor: float, rng: np.random.Generator) -> Image:
    """Shrink about the centre: the output reads the input at ``factor`` times the distance from the centre."""
    return _about_centre(img, np.eye(2) * factor)


@_register("translate", mnist=[1, 2, 3, 4, 5], mnist_c=3)
def _translate(img: Image, shift: int, rng: np.random.Generator) -> Image:
    """Shift by ``shift`` pixels along each axis (random signs), zeros coming in."""
    offset = np.array([shift * _random_sign(rng), shift * _random_sign(rng)])
    return _affine_warp(img, np.eye(2), offset)


# ------------------------------------------------------------------------------------ MNIST-C overlays
@_register("stripe", mnist=[None], mnist_c=1)
def _stripe(img: Image, p: None, rng: np.random.Generator) -> Image:
    """The left and right quarters of the image inverted (columns < W/4 and >= 3W/4)."""
    w = img.shape[1]
    out = img.copy()
    out[:, : w // 4] = 1 - out[:, : w // 4]
    out[:, (3 * w) // 4 :] = 1 - out[:, (3 * w) // 4 :]
    return out


@_register("dotted_line", mnist=[None], mnist_c=1)
def _dotted_line(img: Image, p: None, rng: np.random.Generator) -> Image:
    """A line across the image between random rows, drawn in alternating 2-column dashes, added."""
    h, w = img.shape[:2]
    r0, r1 = rng.integers(0, h - 1, size=2)
    mask = _line_mask(h, w, 0, float(r0), w - 1, float(r1))
    for start in range(0, w, 4):
        mask[:, start : start + 2] = 0
    return img + mask[..., None]


@_register("zigzag", mnist=[None], mnist_c=1)
def _zigzag(img: Image, p: None, rng: np.random.Generator) -> Image:
    """A zigzag (segments 2 px long, 2 px either side) along a random gently sloped line, added."""
    h, w = img.shape[:2]
    half_period, amplitude = 2.0, 2.0
    c0, c1 = 2.0, w - 3.0
    r0 = float(rng.integers(0, h - 1))
    r1 = r0 + float(rng.integers(-5, 5))
    theta = math.atan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / math.cos(theta)
    points = [(0.0, 0.0)]
    k = 0
    while (2 * k + 1) * half_period <= length:
        points.append(((2 * k + 1) * half_period, (-1) ** k * amplitude))
        k += 1
    if points[-1][0] < length:
        points.append((length, 0.0))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cs, rs = rot @ np.array(points).T
    cs, rs = cs + c0, rs + r0
    out = img.copy()
    for i in range(1, len(cs)):
        out = np.clip(out + _line_mask(h, w, cs[i - 1], rs[i - 1], cs[i], rs[i])[..., None], 0, 1)
    return out


@_register(
    "spatter",
    mnist=[
        (0.65, 0.3, 4, 0.69, 0.6),
        (0.65, 0.3, 3, 0.68, 0.6),
        (0.65, 0.3, 2, 0.68, 0.5),
        (0.65, 0.3, 1, 0.65, 1.5),
        (0.67, 0.4, 1, 0.65, 1.5),
    ],
    mnist_c=4,
)
def _spatter(img: Image, p: tuple, rng: np.random.Generator) -> Image:
    """Mud spatter: blurred Gaussian noise thresholded into blobs, their smoothed cores (>= 0.8) painted dark grey
    (63/255; brown (63, 42, 20)/255 on colour images)."""
    loc, scale, sigma, threshold, soften = p
    h, w, channels = img.shape
    liquid = _gaussian(rng.normal(loc=loc, scale=scale, size=(h, w)), sigma)
    blobs = _gaussian((liquid > threshold).astype(np.float64), soften)
    blobs[blobs < 0.8] = 0
    colour = np.array([63, 42, 20]) / 255.0 if channels == 3 else np.array([63 / 255.0])
    return img * (1 - blobs[..., None]) + blobs[..., None] * colour


def _canny(gray: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Canny edges (skimage's defaults): Gaussian smoothing (zero border), Sobel gradients, non-maximum
    suppression along the gradient direction (4 sectors), hysteresis between ``low`` and ``high``."""
    smooth = ndimage.gaussian_filter(gray, sigma, mode="constant")
    gy, gx = ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)
    mag = np.hypot(gx, gy)
    h, w = gray.shape
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = np.digitize(angle, [22.5, 67.5, 112.5, 157.5]) % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    steps = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    padded = np.pad(mag, 1)
    keep = np.zeros_like(mag, dtype=bool)
    for s, (dr, dc) in steps.items():
        ahead = padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        behind = padded[1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]
        keep |= (sector == s) & (mag >= ahead) & (mag >= behind)
    keep[0, :] = keep[-1, :] = keep[:, 0] = keep[:, -1] = False
    weak = keep & (mag >= low)
    labels, count = ndimage.label(weak, structure=np.ones((3, 3)))
    strong = np.unique(labels[keep & (mag >= high)])
    return np.isin(labels, strong[strong > 0]) & weak


@_register("canny_edges", mnist=[None], mnist_c=1)
def _canny_edges(img: Image, p: None, rng: np.random.Generator) -> Image:
    """The image replaced by its Canny edge map (sigma 1), white on black."""
    return np.repeat(_canny(_gray(img)).astype(np.float64)[..., None], img.shape[2], axis=2)
