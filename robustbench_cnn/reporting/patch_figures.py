"""The figures and printed tables of a ``patch`` table (universal adversarial patches).

- :func:`patch_curve_png`: success rate against the area the patch covers, one line per model and target
  (untargeted solid, targeted dashed);
- :func:`patches_png`: the learned patches, one row per (model, target), one column per size;
- :func:`curve_rows` / :func:`target_rows`: the rows of the terminal tables (success per size; per target class);
- :func:`write_patch_figures`: both PNGs into a run folder, each written atomically.

They read plain tables and run no model (:mod:`robustbench_cnn.reporting.plots` draws the curve).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustbench_cnn.reporting.plots import _hwc, _png, curves_png, model_colours

__all__ = ["curve_rows", "patch_curve_png", "patches_png", "target_label", "target_rows", "write_patch_figures"]

#: The file names of the figures in a run folder.
CURVE_FILE, PATCHES_FILE = "patch_curve.png", "patches.png"


def target_label(target: Any) -> str:
    """``untargeted`` for -1, else ``-> K``."""
    return "untargeted" if int(target) < 0 else f"-> {int(target)}"


def _pct(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.1f}"


def patch_curve_png(table: pd.DataFrame, title: str = "universal patch: success rate against patch area") -> bytes:
    """Success rate (percent) against the covered area, one line per (model, target) of a ``patch`` table: untargeted
    solid, targeted dashed; with at most one target class, each model keeps one colour for both."""
    curves: dict[str, list[tuple[float, float]]] = {}
    styles: dict[str, str] = {}
    by_model = model_colours(sorted(table["model"].astype(str).unique()))
    one_target = table.loc[table["target"] >= 0, "target"].nunique() <= 1
    colours: dict[str, str] = {}
    for (model, target), rows in table.groupby(["model", "target"], sort=True):
        label = f"{model} {target_label(target)}"
        curves[label] = list(zip(rows["covered"].astype(float), rows["success_rate"].astype(float)))
        styles[label] = "-" if int(target) < 0 else "--"
        if one_target:
            colours[label] = by_model[str(model)]
    areas = sorted(table["covered"].astype(float).unique())
    return curves_png(
        curves,
        title,
        xlabel="patch area (fraction of the image covered)",
        ylabel="success rate (%)",
        linestyles=styles,
        colours=colours or None,
        xticks=[round(a, 3) for a in areas],
        xlim=(min(areas), max(areas)) if areas else None,
    )


def patches_png(table: pd.DataFrame) -> bytes:
    """The learned patches of a ``patch`` table: one row per (model, target), one column per size (area), each
    patch drawn at its own resolution (nearest neighbour)."""
    keys = list(table.groupby(["model", "target"], sort=True).groups)
    areas = sorted(table["area"].astype(float).unique())
    fig = Figure(figsize=(1.6 * len(areas) + 1.2, 1.6 * len(keys) + 0.4))
    axes = fig.subplots(len(keys), len(areas), squeeze=False)
    for i, (model, target) in enumerate(keys):
        for j, area in enumerate(areas):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            hit = table[(table["model"] == model) & (table["target"] == target) & (table["area"] == area)]
            if len(hit):
                rec = hit.iloc[-1]
                pixels = np.asarray(json.loads(rec["patch"]), float).reshape(json.loads(rec["patch_shape"]))
                gray = pixels.shape[0] == 1
                ax.imshow(_hwc(pixels), cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"{area:g} ({int(rec['side'])}px): {_pct(rec['success_rate'])}%", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{model}\n{target_label(target)}", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def curve_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """One printed row per (model, target, size): area asked and covered, success % [95% CI], on training images,
    robust accuracy (untargeted), n."""
    rows = []
    for rec in table.sort_values(["model", "target", "area"]).to_dict("records"):
        rows.append(
            {
                "model": str(rec["model"]),
                "target": target_label(rec["target"]),
                "threat": str(rec["threat"]),
                "patch": f"{int(rec['side'])}x{int(rec['side'])} ({_pct(rec['covered'])}%)",
                "success %": f"{_pct(rec['success_rate'])} [{_pct(rec['success_lo'])}, {_pct(rec['success_hi'])}]",
                "train success %": _pct(rec["train_success_rate"]),
                "robust %": _pct(rec["robust_acc"]) if int(rec["target"]) < 0 else "",
                "clean %": _pct(rec["clean_acc"]),
                "attacked": str(int(rec["attacked"])),
            }
        )
    return rows


def target_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """The per-target-class table: one row per (model, target), one success-% column per patch area."""
    areas = sorted(table["area"].astype(float).unique())
    rows = []
    for (model, target), group in table.groupby(["model", "target"], sort=True):
        row = {"model": str(model), "target": target_label(target)}
        for area in areas:
            hit = group[group["area"] == area]
            row[f"patch:{area:g} %"] = _pct(hit["success_rate"].iloc[-1]) if len(hit) else ""
        rows.append(row)
    return rows


def write_patch_figures(run_dir: str | os.PathLike, table: pd.DataFrame) -> list[Path]:
    """Write :data:`CURVE_FILE` and :data:`PATCHES_FILE` for ``table`` into ``run_dir`` (atomically); returns the
    paths (none for an empty table)."""
    if not len(table):
        return []
    paths = []
    for name, png in ((CURVE_FILE, patch_curve_png(table)), (PATCHES_FILE, patches_png(table))):
        path = Path(run_dir) / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        paths.append(path)
    return paths
