"""The PNG grid of an ``explain`` run: per model, one row per point; columns: the clean image, the adversarial image,
the perturbation (summed over the channels, signed, amplified to the full range of a diverging colour map: blue
darker, red brighter, white unchanged), then for each attribution method its map of the clean and of the
adversarial prediction.

:func:`write_explain_grids` reads the run's ``explain_maps`` table (:mod:`robustbench_cnn.pipeline.cells.explain`)
and writes ``explain_<model>.png`` into the run folder; :func:`explain_grid_png` draws one model's grid from plain
arrays (Agg canvas, no pyplot).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from robustbench_cnn.reporting.plots import _png

__all__ = ["explain_grid_png", "grid_path", "write_explain_grids"]

#: Short column heads of the attribution methods.
METHOD_HEADS = {"saliency": "saliency", "integrated-gradients": "int. gradients", "occlusion": "occlusion"}


def _show(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """C x H x W in [0, 1] -> what imshow takes (H x W with a gray map, or H x W x 3)."""
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.transpose(image, (1, 2, 0)), None


def explain_grid_png(
    x: np.ndarray,
    x_adv: np.ndarray,
    maps: Mapping[str, tuple[np.ndarray, np.ndarray]],
    captions: Sequence[tuple[str, str]],
    title: str = "",
) -> bytes:
    """One row per point of ``x``/``x_adv`` (N x C x H x W in [0, 1]): clean, adversarial, signed perturbation,
    then ``maps[method] = (clean N x H x W, adversarial N x H x W)`` side by side, each map scaled to its own
    maximum. ``captions[i]`` is (clean caption, adversarial caption)."""
    n = len(x)
    columns = 3 + 2 * len(maps)
    fig = Figure(figsize=(1.35 * columns, 1.45 * n + 0.6))
    axes = fig.subplots(n, columns, squeeze=False)
    for i in range(n):
        delta = (np.asarray(x_adv[i], float) - np.asarray(x[i], float)).sum(axis=0)
        scale = float(np.abs(delta).max())
        panels = [
            (*_show(np.asarray(x[i])), 0.0, 1.0, captions[i][0]),
            (*_show(np.asarray(x_adv[i])), 0.0, 1.0, captions[i][1]),
            (delta, "RdBu_r", -scale or -1.0, scale or 1.0, f"±{scale:.3g}" if scale > 0 else "no change"),
        ]
        for clean, adv in maps.values():
            for which, stack in (("clean", clean), ("adv", adv)):
                top = float(np.max(stack[i])) if np.size(stack[i]) else 0.0
                panels.append((np.asarray(stack[i]), "inferno", 0.0, top or 1.0, which))
        for j, (image, cmap, vmin, vmax, caption) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(caption, fontsize=7)
    heads = ["clean", "adversarial", "perturbation"]
    for method in maps:
        heads += [
            f"{METHOD_HEADS.get(method, method)}\n(clean pred)",
            f"{METHOD_HEADS.get(method, method)}\n(adv pred)",
        ]
    for j, head in enumerate(heads):
        axes[0, j].set_title(f"{head}\n{axes[0, j].get_title()}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def grid_path(run_dir: str | os.PathLike, model: str) -> Path:
    """Where the grid of ``model`` goes: ``<run>/explain_<model with / as __>.png``."""
    return Path(run_dir) / f"explain_{re.sub(r'[^A-Za-z0-9_.-]+', '__', model)}.png"


def write_explain_grids(run_dir: str | os.PathLike) -> list[Path]:
    """Write one PNG grid per model of the run's ``explain_maps`` table; returns the paths (none without it)."""
    from robustbench_cnn.reporting.boards_extra import read_run_table

    table = read_run_table(run_dir, "explain_maps")
    if table is None or not len(table):
        return []
    paths = []
    for model, rows in table.groupby("model", sort=True):
        samples = sorted(rows["sample"].unique())

        def stack(image: str, rows=rows, samples=samples) -> np.ndarray:
            picked = rows[rows["image"] == image].set_index("sample")
            return np.stack(
                [
                    np.asarray(picked.loc[s, "values"], np.float32).reshape(
                        int(picked.loc[s, "channels"]), int(picked.loc[s, "height"]), int(picked.loc[s, "width"])
                    )
                    for s in samples
                ]
            )

        images = list(dict.fromkeys(rows["image"]))
        methods = [name.split(":", 1)[1] for name in images if name.startswith("clean:")]
        maps = {m: (stack(f"clean:{m}")[:, 0], stack(f"adv:{m}")[:, 0]) for m in methods}
        heads = rows[rows["image"] == "x"].set_index("sample").loc[samples]
        captions = []
        for rec in heads.to_dict("records"):
            target = f" (target {rec['target']})" if rec["target"] >= 0 else ""
            verdict = "broken" if rec["success"] else ("robust" if rec["attacked"] else "not attacked")
            captions.append(
                (f"label {rec['label']}, pred {rec['pred_clean']}", f"pred {rec['pred_adv']}{target} {verdict}")
            )
        first = heads.iloc[0]
        title = f"{model}: {first['attack']} {first['norm']}:{first['eps']:g}"
        png = explain_grid_png(stack("x"), stack("x_adv"), maps, captions, title)
        path = grid_path(run_dir, str(model))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        paths.append(path)
    return paths
