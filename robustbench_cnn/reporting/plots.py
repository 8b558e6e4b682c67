"""The leaderboard's figures as PNG bytes: robustness curves, the clean/robust trade-off with its Pareto
front, the transfer heatmap and the adversarial example grid.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas (never ``pyplot``), so no GUI
backend or global figure state is involved and the functions are safe in tests and worker processes.
Each function takes plain data and returns PNG bytes; :mod:`robustbench_cnn.reporting.report` decides where they go.
A model keeps one colour in every figure of a report (:func:`model_colours`), and legends list models in one order.
Accuracies and rates are drawn in percent.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: PNG metadata left out so that equal data gives byte-equal images (no matplotlib version, no date).
_PNG_METADATA = {"Software": None}
_DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata=_PNG_METADATA, bbox_inches="tight")
    return buf.getvalue()


#: The colours models get, in order: matplotlib's tab10, then the lighter tab20 shades (then again, dashed).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
LINESTYLES = ("-", "--", ":", "-.")


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """One colour per model (``#rrggbb``), in the given order: the report's legend order."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(models))}


def curves_png(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    xlabel: str = "epsilon",
    *,
    colours: Mapping[str, str] | None = None,
    linestyles: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    xlim: tuple[float, float] | None = None,
    xticks: Sequence[float] | None = None,
    ylabel: str = "robust accuracy (%)",
) -> bytes:
    """Accuracy against epsilon, one line per label (accuracies in [0, 1], drawn in percent).

    ``colours`` / ``linestyles``: per label (default: the palette in ``order``); ``order``: the legend order (labels
    not in it follow in their own order); ``xlim`` / ``xticks``: a shared epsilon axis, so that the curves of
    different boards of one threat model can be read side by side."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    labels = [lab for lab in (order or []) if lab in curves] + [lab for lab in curves if lab not in (order or [])]
    default = model_colours(labels)
    for label in labels:
        pts = sorted((float(e), float(a)) for e, a in curves[label] if a == a)  # drop NaN accuracies
        if pts:
            ax.plot(
                [e for e, _ in pts],
                [100 * a for _, a in pts],
                marker="o",
                markersize=4,
                label=label,
                color=(colours or default).get(label, default[label]),
                linestyle=(linestyles or {}).get(label, "-"),
            )
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(-2, 102))
    if xlim is not None:
        pad = 0.03 * max(xlim[1] - xlim[0], 1e-12)
        ax.set_xlim(xlim[0] - pad, xlim[1] + pad)
    if xticks is not None and len(xticks):
        ax.set_xticks(list(xticks), labels=[f"{t:g}" for t in xticks], fontsize=8)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def tradeoff_png(
    labels: Sequence[str],
    clean: Sequence[float],
    robust: Sequence[float],
    front: Sequence[int],
    title: str,
    colours: Sequence[str] | None = None,
) -> bytes:
    """Clean against robust accuracy, one point per model (in ``colours``, default the palette, listed in the legend
    in the given order), the Pareto front (indices ``front``) drawn as a dashed line through ringed points."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    xs, ys = 100 * np.asarray(clean, float), 100 * np.asarray(robust, float)
    colours = list(colours) if colours is not None else [PALETTE[i % len(PALETTE)] for i in range(len(xs))]
    for label, x, y, colour in zip(labels, xs, ys, colours):
        ax.scatter([x], [y], color=colour, s=42, zorder=4, label=label)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if len(front):
        order = sorted(front, key=lambda i: (xs[i], -ys[i]))
        ax.plot(xs[order], ys[order], color="#333333", linestyle="--", linewidth=1.2, zorder=2, label="Pareto front")
        ax.scatter(xs[order], ys[order], s=130, facecolors="none", edgecolors="#333333", linewidths=1.2, zorder=3)
    ax.set(title=title, xlabel="clean accuracy (%)", ylabel="robust accuracy (%)")
    for values, set_lim in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        finite = values[np.isfinite(values)]
        if len(finite):  # pad the data, but never past the 0-100 % range
            lo, hi = float(finite.min()), float(finite.max())
            pad = 0.15 * max(hi - lo, 4.0)
            set_lim(max(-1.0, lo - pad), min(101.0, hi + pad))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def heatmap_png(
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    xlabel: str = "target",
    ylabel: str = "source",
    colorbar: str = "success rate",
) -> bytes:
    """A rows x cols matrix of rates in [0, 1], coloured and written in percent with one decimal (NaN left blank)."""
    matrix = 100 * np.asarray(matrix, float)
    size = max(3.5, 0.9 * max(len(rows), len(cols)) + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0.0, vmax=100.0)
    fig.colorbar(image, ax=ax, label=f"{colorbar} (%)")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j] == matrix[i, j]:
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if matrix[i, j] > 60 else "white",
                )
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return _png(fig)


def _hwc(image: np.ndarray) -> np.ndarray:
    """C x H x W (or H x W) in [0, 1] -> what imshow wants (H x W, or H x W x 3)."""
    image = np.asarray(image, float)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return np.clip(image, 0.0, 1.0)


def examples_png(
    x: np.ndarray,
    x_adv: np.ndarray,
    captions: Sequence[tuple[str, str]],
    row_labels: Sequence[str] = (),
    row_colours: Sequence[Any] = (),
) -> bytes:
    """One row per example: clean image, adversarial image, perturbation amplified to the full range; the row label
    (the model) in its report colour from ``row_colours`` when given.

    ``captions[i]`` is (clean caption, adversarial caption), e.g. ("label 3, pred 3", "pred 8"). The
    perturbation is shown as 0.5 + delta / (2 max|delta|): grey is unchanged, its scale is in its title.
    """
    n = len(x)
    fig = Figure(figsize=(6.0, 1.9 * n + 0.4))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        delta = np.asarray(x_adv[i], float) - np.asarray(x[i], float)
        scale = float(np.abs(delta).max())
        amplified = 0.5 + delta / (2 * scale) if scale > 0 else np.full_like(delta, 0.5)
        gray = np.asarray(x[i]).ndim == 2 or np.asarray(x[i]).shape[0] == 1
        cmap = "gray" if gray else None
        panels = [
            (x[i], captions[i][0]),
            (x_adv[i], captions[i][1]),
            (amplified, f"|delta|max={scale:.3g}, x{1 / (2 * scale):.3g}" if scale > 0 else "no change"),
        ]
        for j, (img, caption) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(_hwc(img), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(caption, fontsize=8)
        if i < len(row_labels) and row_labels[i]:
            colour = row_colours[i] if i < len(row_colours) and row_colours[i] else "black"
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7, color=colour)
    for j, head in enumerate(("clean", "adversarial", "perturbation (amplified)")):
        axes[0, j].set_title(f"{head}\n{axes[0, j].get_title()}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


__all__ = ["PALETTE", "curves_png", "examples_png", "heatmap_png", "model_colours", "tradeoff_png"]
