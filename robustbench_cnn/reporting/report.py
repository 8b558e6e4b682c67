"""The leaderboard of a run folder: ``leaderboard.md`` and a self-contained ``leaderboard.html``.

``write_report("results/run-...")`` reads the run's tables (``summary.parquet``, and when present
``transfer_matrix.parquet`` and ``examples.npz``) and writes, per dataset x threat model (norm, and target
policy for targeted runs):

- a ranked table: model, defense, clean accuracy, worst-case robust accuracy at the selected epsilon (the
  cascade's ``worst-case`` row, or the single attack's row when a cell ran one attack), the robust accuracy
  after each attack of the cascade, the validity flags and the training cost from the model store's cards;
- robustness curves (accuracy against epsilon, one line per model) and the clean/robust trade-off scatter
  with its Pareto front;

then the transfer heatmap, the adversarial example grid and the flags with their explanations. The HTML
embeds every image as a base64 ``data:`` URI and its CSS inline, and its Content-Security-Policy forbids
any other source, so it opens offline and loads nothing. The Markdown links the same PNGs, written to
``leaderboard_files/`` beside it. This module reads tables only: it runs no model and no attack.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.types import format_eps
from robustbench_cnn.evaluation.examples import EXAMPLES_FILE, load_examples
from robustbench_cnn.evaluation.flags import EXPLANATIONS
from robustbench_cnn.reporting import boards_extra
from robustbench_cnn.tables.results import RunStore, atomic_write_text, read_summary, with_cascade

TRANSFER_FILE = "transfer_matrix.parquet"
IMAGES_DIR = "leaderboard_files"
WORST_CASE = "worst-case"
#: Most example rows drawn in the grid (the first ones per model, models in file order).
MAX_EXAMPLE_ROWS = 12


# ------------------------------------------------------------------------------------------ Pareto front


def pareto_front(clean: Sequence[float], robust: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher is better on both).

    A point is dominated when another one is at least as good on both axes and better on one; equal points
    are all kept. NaN points are never on the front. The indices come sorted by clean accuracy, ascending
    (so robust accuracy descends along them).
    """
    pts = [(float(c), float(r)) for c, r in zip(clean, robust)]
    front = []
    for i, (ci, ri) in enumerate(pts):
        if math.isnan(ci) or math.isnan(ri):
            continue
        dominated = any(
            cj >= ci and rj >= ri and (cj > ci or rj > ri) for cj, rj in pts if not (math.isnan(cj) or math.isnan(rj))
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (pts[i][0], -pts[i][1], i))


# ------------------------------------------------------------------------------------------ leaderboards


@dataclass
class Board:
    """One leaderboard: a dataset x norm (x target policy), its ranked entries and robustness curves."""

    dataset: str
    norm: str
    targeted: bool
    target_policy: str
    eps: float  # the epsilon the ranking uses
    #: ranked rows: rank, model, defense, cascade, n, clean_acc, robust_acc, one per attack, flags, train_cost
    entries: pd.DataFrame
    attacks: list[str]  # per-attack columns, in cascade order
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    setting: str = "white-box"  # or "black-box": transfer through a proxy, ranked on its own board

    @property
    def title(self) -> str:
        target = f"targeted ({self.target_policy})" if self.targeted else "untargeted"
        setting = " · black-box transfer" if self.setting == "black-box" else ""
        return f"{self.dataset} · {self.norm} · {target}{setting}"

    @property
    def slug(self) -> str:
        text = f"{self.dataset}-{self.norm}" + (f"-targeted-{self.target_policy}" if self.targeted else "")
        text += "-black-box" if self.setting == "black-box" else ""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


_GROUP = ["dataset", "norm", "setting", "targeted", "target_policy"]
_ENTRY = ["model", "cascade"]


def _normalized(summary: pd.DataFrame) -> pd.DataFrame:
    frame = with_cascade(summary).copy()
    for col in ("dataset", "norm", "target_policy", "model", "cascade", "defense", "flags", "attack"):
        frame[col] = frame[col].astype("string").fillna("") if col in frame else ""
    frame["targeted"] = frame["targeted"].astype("boolean").fillna(False).astype(bool) if "targeted" in frame else False
    frame.loc[~frame["targeted"], "target_policy"] = ""
    kinds = frame["attack_kind"].astype("string").fillna("") if "attack_kind" in frame else pd.Series("", frame.index)
    frame["setting"] = np.where(kinds == "transfer", "black-box", "white-box")
    for col in ("eps", "clean_acc", "robust_acc"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    if "n" not in frame:
        frame["n"] = pd.NA
    return frame


def worst_case(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per model x cascade x dataset x norm x targeting x eps: the worst case over the cascade.

    That is the ``worst-case`` row where the cell had several attacks, the single attack's row where it had
    one (and the lowest robust accuracy if a cell somehow has several attacks and no worst-case row).
    """
    frame = _normalized(summary)
    keys = _ENTRY + _GROUP + ["eps"]
    rows = []
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        wc = group[group["attack"] == WORST_CASE]
        pick = wc.iloc[-1] if len(wc) else group.loc[group["robust_acc"].fillna(np.inf).idxmin()]
        rows.append(pick)
    return pd.DataFrame(rows, columns=frame.columns).reset_index(drop=True)


def _select_eps(entries: pd.DataFrame, wanted: float | None) -> float:
    if wanted is not None:
        return float(wanted)
    per_entry = [set(g["eps"]) for _, g in entries.groupby(_ENTRY, sort=False)]
    common = set.intersection(*per_entry) if per_entry else set()
    return max(common) if common else float(entries["eps"].max())


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _cards(store: str | os.PathLike | None) -> dict[str, Any]:
    from robustbench_cnn.store import list_checkpoints

    try:
        return {card.name: card for card in list_checkpoints(store)}
    except OSError:
        return {}


def _train_cost(card: Any) -> str:
    if card is None or card.train_time_s is None:
        return ""
    cost = _duration(float(card.train_time_s))
    return f"{cost} ({card.epochs} ep)" if card.epochs else cost


def _codes(values: pd.Series) -> list[str]:
    return sorted({c for v in values.dropna() for c in str(v).split(";") if c})


def leaderboards(
    summary: pd.DataFrame, store: str | os.PathLike | None = None, eps: Mapping[str, float] | None = None
) -> list[Board]:
    """The ranked leaderboards of a summary table, one per dataset x norm (x target policy).

    ``eps`` maps a norm to the epsilon to rank at (default: the largest epsilon every entry of the board
    was evaluated at). Entries rank by robust accuracy, then clean accuracy (both descending), then name;
    entries without a result at the selected epsilon come last. Training cost comes from the cards of the
    model store ``store`` (``$RBC_HOME`` by default), blank for models it does not hold.
    """
    if not len(summary):
        return []
    frame = _normalized(summary)
    worst = worst_case(frame)
    cards = _cards(store)
    boards = []
    worst = worst.assign(_order=worst["setting"].map({"white-box": 0, "black-box": 1}))
    for (dataset, norm, _, setting, targeted, policy), group in worst.groupby(
        ["dataset", "norm", "_order", "setting", "targeted", "target_policy"], sort=True, dropna=False
    ):
        sel = _select_eps(group, (eps or {}).get(str(norm)))
        cells = frame[
            (frame["dataset"] == dataset)
            & (frame["norm"] == norm)
            & (frame["targeted"] == targeted)
            & (frame["target_policy"] == policy)
            & (frame["setting"] == setting)
        ]
        attacks = [a for a in dict.fromkeys(cells["attack"]) if a and a != WORST_CASE]
        rows, curves = [], {}
        multi_cascade = group["cascade"].nunique() > 1
        for (model, cascade), entry in group.groupby(_ENTRY, sort=False):
            entry = entry.sort_values("eps")
            at = entry[np.isclose(entry["eps"], sel, rtol=0, atol=1e-12)]
            at_cells = cells[
                (cells["model"] == model)
                & (cells["cascade"] == cascade)
                & np.isclose(cells["eps"], sel, rtol=0, atol=1e-12)
            ]
            all_cells = cells[(cells["model"] == model) & (cells["cascade"] == cascade)]
            card = cards.get(str(model))
            defense = entry["defense"].iloc[-1] or (card.recipe if card is not None else "")
            row = {
                "model": model,
                "defense": defense,
                "cascade": cascade,
                "n": entry["n"].iloc[-1],
                "clean_acc": float(entry["clean_acc"].iloc[-1]),
                "robust_acc": float(at["robust_acc"].iloc[-1]) if len(at) else float("nan"),
            }
            for attack in attacks:
                hit = at_cells[at_cells["attack"] == attack]
                row[attack] = float(hit["robust_acc"].iloc[-1]) if len(hit) else float("nan")
            row["flags"] = ";".join(_codes(all_cells["flags"]))
            row["train_cost"] = _train_cost(card)
            rows.append(row)
            label = f"{model} ({cascade})" if multi_cascade else str(model)
            curves[label] = list(zip(entry["eps"].tolist(), entry["robust_acc"].tolist()))
        table = pd.DataFrame(rows)
        table["_missing"] = table["robust_acc"].isna()
        table = table.sort_values(
            ["_missing", "robust_acc", "clean_acc", "model", "cascade"],
            ascending=[True, False, False, True, True],
            kind="mergesort",
        )
        table = table.drop(columns="_missing").reset_index(drop=True)
        table.insert(0, "rank", range(1, len(table) + 1))
        boards.append(
            Board(str(dataset), str(norm), bool(targeted), str(policy), sel, table, attacks, curves, str(setting))
        )
    return boards


# ------------------------------------------------------------------------------------------ transfer, examples


def read_transfer(run_dir: Path) -> list[tuple[str, pd.DataFrame]]:
    """The transfer matrix of a run folder as (title, source x target grid) pairs, one per attack x threat;
    empty when the folder has no ``transfer_matrix.parquet``."""
    path = run_dir / TRANSFER_FILE
    if not path.exists():
        return []
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise RbcError(f"unreadable transfer matrix {path}: {exc}") from None
    missing = {"source", "target", "success_rate"} - set(table.columns)
    if missing:
        raise RbcError(f"transfer matrix {path} lacks columns: {', '.join(sorted(missing))}")
    keys = [c for c in ("dataset", "attack", "norm", "eps", "targeted") if c in table.columns]
    groups = table.groupby(keys, sort=False, dropna=False) if keys else [((), table)]
    grids = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        info = dict(zip(keys, key))
        bits = [str(info["dataset"])] if "dataset" in info else []
        bits += [str(info["attack"])] if "attack" in info else []
        if "norm" in info:
            bits.append(f"{info['norm']}:{format_eps(float(info['eps']))}" if "eps" in info else str(info["norm"]))
        if info.get("targeted"):
            bits.append("targeted")
        sources = list(dict.fromkeys(part["source"].astype(str)))
        targets = list(dict.fromkeys(part["target"].astype(str)))
        grid = (
            part.assign(source=part["source"].astype(str), target=part["target"].astype(str))
            .pivot_table(index="source", columns="target", values="success_rate", aggfunc="mean", dropna=False)
            .reindex(index=sources, columns=targets)
        )
        grids.append((", ".join(bits), grid))
    return grids


def _examples(run_dir: Path) -> dict[str, np.ndarray] | None:
    path = run_dir / EXAMPLES_FILE
    return load_examples(path) if path.exists() else None


def _example_rows(ex: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], list[str]]:
    models = [str(m) for m in ex["model"]]
    per_model = max(1, MAX_EXAMPLE_ROWS // max(1, len(set(models))))
    seen: dict[str, int] = {}
    keep = []
    for i, m in enumerate(models):
        seen[m] = seen.get(m, 0) + 1
        if seen[m] <= per_model and len(keep) < MAX_EXAMPLE_ROWS:
            keep.append(i)
    classes = [str(c) for c in ex["classes"]] if "classes" in ex else []

    def name(k: int) -> str:
        return classes[k] if 0 <= k < len(classes) else str(k)

    captions, labels = [], []
    for i in keep:
        y, pc, pa = int(ex["y"][i]), int(ex["pred_clean"][i]), int(ex["pred_adv"][i])
        mark = "✗" if pa != y else "✓"
        captions.append((f"label {name(y)}, pred {name(pc)}", f"pred {name(pa)} {mark}"))
        threat = ""
        if "norm" in ex and "eps" in ex:
            threat = f"\n{ex['norm'][i]}:{format_eps(float(ex['eps'][i]))}"
        labels.append(_short(models[i]) + threat)
    return ex["x"][keep], ex["x_adv"][keep], captions, labels


def _short(model: str) -> str:
    return model.split("/", 1)[-1] if len(model) > 18 else model


# ------------------------------------------------------------------------------------------ rendering


@dataclass
class Rendered:
    """A rendered figure: file name (Markdown), alt text and PNG bytes (HTML data URI)."""

    name: str
    alt: str
    png: bytes

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{100 * v:.1f}"


def _columns(board: Board) -> list[tuple[str, str]]:
    """(key, header) of a board's table columns."""
    eps = format_eps(board.eps)
    cols = [
        ("rank", "#"),
        ("model", "model"),
        ("defense", "defense"),
        ("cascade", "cascade"),
        ("n", "n"),
        ("clean_acc", "clean %"),
        ("robust_acc", f"robust % @ {board.norm}:{eps}"),
    ]
    cols += [(a, f"{a} %") for a in board.attacks]
    cols += [("flags", "flags"), ("train_cost", "train cost")]
    return cols


def _cell(key: str, value: Any, attacks: list[str]) -> str:
    if key in ("clean_acc", "robust_acc") or key in attacks:
        return _pct(value)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def _figures(
    boards: list[Board], transfer: list[tuple[str, pd.DataFrame]], examples: dict[str, np.ndarray] | None
) -> dict[str, list[Rendered]]:
    from robustbench_cnn.reporting import plots

    figs: dict[str, list[Rendered]] = {}
    for board in boards:
        items = [
            Rendered(
                f"curves-{board.slug}.png",
                f"robustness curves, {board.title}",
                plots.curves_png(board.curves, f"{board.title}: robust accuracy vs epsilon", f"epsilon ({board.norm})"),
            )
        ]
        table = board.entries
        ok = table["robust_acc"].notna().to_numpy()
        if ok.any():
            labels = [_short(str(m)) for m in table["model"][ok]]
            clean, robust = table["clean_acc"][ok].tolist(), table["robust_acc"][ok].tolist()
            items.append(
                Rendered(
                    f"tradeoff-{board.slug}.png",
                    f"clean vs robust trade-off, {board.title}",
                    plots.tradeoff_png(
                        labels,
                        clean,
                        robust,
                        pareto_front(clean, robust),
                        f"{board.title}: trade-off at eps={format_eps(board.eps)}",
                    ),
                )
            )
        figs[board.slug] = items
    figs["transfer"] = [
        Rendered(
            f"transfer-{k}.png",
            f"transfer matrix, {title}",
            plots.heatmap_png(
                grid.to_numpy(float),
                [str(r) for r in grid.index],
                [str(c) for c in grid.columns],
                f"transfer success rate ({title})",
            ),
        )
        for k, (title, grid) in enumerate(transfer)
    ]
    figs["examples"] = []
    if examples is not None and len(examples["x"]):
        x, x_adv, captions, labels = _example_rows(examples)
        figs["examples"] = [
            Rendered(
                "examples.png",
                "adversarial examples: clean, adversarial, perturbation",
                plots.examples_png(x, x_adv, captions, labels),
            )
        ]
    return figs


def _flag_uses(summary: pd.DataFrame) -> dict[str, list[str]]:
    """Flag code -> the "model (norm, eps ...)" entries that raised it."""
    frame = _normalized(summary)
    uses: dict[str, dict[str, list[str]]] = {}
    for _, row in frame[frame["flags"] != ""].iterrows():
        for code in str(row["flags"]).split(";"):
            if code:
                where = uses.setdefault(code, {}).setdefault(f"{row['model']} ({row['norm']})", [])
                eps = format_eps(float(row["eps"]))
                if eps not in where:
                    where.append(eps)
    return {
        code: [f"{k} at eps {', '.join(v)}" for k, v in sorted(entries.items())]
        for code, entries in sorted(uses.items())
    }


_ATTACK_NOTE = (
    "Robust accuracy is the per-sample worst case over the cascade's attacks at the selected epsilon "
    "(or the single attack's, for a one-attack cell). The per-attack columns give the robust accuracy "
    "after each attack of the cascade, in order: each attack runs only on the points still robust, so "
    "the last one equals the worst case. Accuracies in percent of the n test points."
)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    title: str,
    meta: list[str],
    boards: list[Board],
    figs: dict[str, list[Rendered]],
    transfer: list[tuple[str, pd.DataFrame]],
    flag_uses: dict[str, list[str]],
    image_dir: str = IMAGES_DIR,
) -> str:
    lines = [f"# {title}", ""] + [f"- {m}" for m in meta] + [""]
    if not boards:
        lines += ["No results in this run.", ""]
    for board in boards:
        cols = _columns(board)
        lines += [
            f"## {board.title}",
            "",
            f"Ranked by robust accuracy at {board.norm} eps = {format_eps(board.eps)}.",
            "",
            "| " + " | ".join(_md_escape(h) for _, h in cols) + " |",
            "|"
            + "|".join(
                "---:" if k in ("rank", "n", "clean_acc", "robust_acc") or k in board.attacks else "---"
                for k, _ in cols
            )
            + "|",
        ]
        for row in board.entries.to_dict("records"):
            lines.append("| " + " | ".join(_md_escape(_cell(k, row.get(k), board.attacks)) for k, _ in cols) + " |")
        lines += ["", _ATTACK_NOTE, ""]
        lines += [f"![{f.alt}]({image_dir}/{f.name})" for f in figs.get(board.slug, [])] + [""]
    if transfer:
        lines += [
            "## Transfer matrix",
            "",
            "Success rate of adversarial examples crafted on the source model "
            "(rows) against the target model (columns); the diagonal is white-box.",
            "",
        ]
        for (sub, grid), fig in zip(transfer, figs["transfer"]):
            targets = [str(c) for c in grid.columns]
            lines += [
                f"### {sub}",
                "",
                "| source \\ target | " + " | ".join(map(_md_escape, targets)) + " |",
                "|---|" + "---:|" * len(targets),
            ]
            for src, values in grid.iterrows():
                lines.append(f"| {_md_escape(str(src))} | " + " | ".join(_pct(v) for v in values) + " |")
            lines += ["", f"![{fig.alt}]({image_dir}/{fig.name})", ""]
    if figs.get("examples"):
        fig = figs["examples"][0]
        lines += [
            "## Adversarial examples",
            "",
            "Clean image, adversarial image and the perturbation amplified to the full range (grey: unchanged).",
            "",
            f"![{fig.alt}]({image_dir}/{fig.name})",
            "",
        ]
    lines += ["## Validity flags", ""]
    if flag_uses:
        for code, uses in flag_uses.items():
            lines += [
                f"- **{code}**: {EXPLANATIONS.get(code, 'no explanation recorded')}. "
                f"Raised for: {_md_escape('; '.join(uses))}."
            ]
    else:
        lines.append("No validity flags were raised.")
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
ul.meta{color:#555;font-size:.9rem;padding-left:1.2rem}
nav a{margin-right:1rem}
table{border-collapse:collapse;font-size:.88rem;margin:.6rem 0}
th,td{border:1px solid #d5d5d5;padding:.25rem .55rem;text-align:left;white-space:nowrap}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.first td{background:#eef7ee}
abbr{color:#b35c00;text-decoration:underline dotted;cursor:help}
.note{color:#555;font-size:.85rem;max-width:60rem}
.figs{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;flex:0 1 48%;min-width:320px}figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.8rem;color:#666}
dt{font-weight:600;margin-top:.6rem}dd{margin-left:1.2rem}
"""

#: Only inline styles and data: images may load; nothing else (no scripts, no network).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_figs(figs: list[Rendered]) -> str:
    return (
        '<div class="figs">'
        + "".join(
            f'<figure><img alt="{_h(f.alt)}" src="{f.data_uri()}"><figcaption>{_h(f.alt)}</figcaption></figure>'
            for f in figs
        )
        + "</div>"
    )


def render_html(
    title: str,
    meta: list[str],
    boards: list[Board],
    figs: dict[str, list[Rendered]],
    transfer: list[tuple[str, pd.DataFrame]],
    flag_uses: dict[str, list[str]],
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        '<ul class="meta">' + "".join(f"<li>{_h(m)}</li>" for m in meta) + "</ul>",
    ]
    nav = [(b.slug, b.title) for b in boards]
    nav += [("transfer", "Transfer matrix")] if transfer else []
    nav += [("examples", "Adversarial examples")] if figs.get("examples") else []
    nav += [("flags", "Validity flags")]
    parts.append("<nav>" + "".join(f'<a href="#{_h(s)}">{_h(t)}</a>' for s, t in nav) + "</nav>")
    if not boards:
        parts.append("<p>No results in this run.</p>")
    for board in boards:
        cols = _columns(board)
        head = "".join(f"<th>{_h(h)}</th>" for _, h in cols)
        body = []
        for row in board.entries.to_dict("records"):
            cells = []
            for key, _ in cols:
                text = _cell(key, row.get(key), board.attacks)
                if key == "flags" and text:
                    text_html = " ".join(
                        f'<abbr title="{_h(EXPLANATIONS.get(c, c))}">{_h(c)}</abbr>' for c in text.split(";")
                    )
                else:
                    text_html = _h(text)
                numeric = key in ("rank", "n", "clean_acc", "robust_acc") or key in board.attacks
                cells.append(f'<td class="num">{text_html}</td>' if numeric else f"<td>{text_html}</td>")
            cls = ' class="first"' if row["rank"] == 1 else ""
            body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
        parts += [
            f'<section id="{_h(board.slug)}"><h2>{_h(board.title)}</h2>',
            f"<p>Ranked by robust accuracy at {_h(board.norm)} eps = {_h(format_eps(board.eps))}.</p>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
            f'<p class="note">{_h(_ATTACK_NOTE)}</p>',
            _html_figs(figs.get(board.slug, [])),
            "</section>",
        ]
    if transfer:
        parts += [
            '<section id="transfer"><h2>Transfer matrix</h2>',
            '<p class="note">Success rate of adversarial examples crafted on the source model (rows) against '
            "the target model (columns); the diagonal is white-box.</p>",
            _html_figs(figs["transfer"]),
            "</section>",
        ]
    if figs.get("examples"):
        parts += [
            '<section id="examples"><h2>Adversarial examples</h2>',
            '<p class="note">Clean image, adversarial image and the perturbation amplified to the full range '
            "(grey: unchanged).</p>",
            _html_figs(figs["examples"]),
            "</section>",
        ]
    parts.append('<section id="flags"><h2>Validity flags</h2>')
    if flag_uses:
        parts.append(
            "<dl>"
            + "".join(
                f"<dt>{_h(code)}</dt><dd>{_h(EXPLANATIONS.get(code, 'no explanation recorded'))}.<br>"
                f"<small>Raised for: {_h('; '.join(uses))}.</small></dd>"
                for code, uses in flag_uses.items()
            )
            + "</dl>"
        )
    else:
        parts.append("<p>No validity flags were raised.</p>")
    parts += ["</section>", "</body></html>"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------ entry point


def load_run_summary(run_dir: Path) -> pd.DataFrame:
    """The run's summary: ``summary.parquet``, else rebuilt from its finished cells (a run still going)."""
    if (run_dir / "summary.parquet").exists():
        try:
            return read_summary(run_dir)
        except Exception as exc:  # pyarrow and pandas raise several types for a broken file
            raise RbcError(f"unreadable summary {run_dir / 'summary.parquet'}: {exc}") from None
    if (run_dir / "cells").is_dir():
        return RunStore(run_dir).summary()
    raise RbcError(f"{run_dir} is not a run folder: it has no summary.parquet and no cells/")


def _meta(run_dir: Path, summary: pd.DataFrame) -> list[str]:
    meta = [f"run folder: {run_dir.name}"]
    if len(summary):
        models = summary["model"].dropna().nunique()
        meta.append(f"{models} model(s), {len(summary)} result rows")
        stamps = summary["timestamp"].dropna().astype(str) if "timestamp" in summary else pd.Series([], dtype=str)
        if len(stamps):
            meta.append(f"evaluated {stamps.min()[:19]} to {stamps.max()[:19]} (UTC)")
        shas = summary["git_sha"].dropna().astype(str).unique() if "git_sha" in summary else []
        shas = [s for s in shas if s]
        if shas:
            meta.append(f"git {', '.join(s[:10] for s in shas)}")
        devices = summary["device"].dropna().astype(str).unique() if "device" in summary else []
        if len(devices):
            meta.append(f"device {', '.join(devices)}")
    return meta


def write_report(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    *,
    eps: Mapping[str, float] | None = None,
    reference: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``leaderboard.md`` (with its PNGs in ``leaderboard_files/``) and the self-contained
    ``leaderboard.html`` for the run folder ``run_dir``, in ``out_dir`` (default: the run folder).

    ``store``: the model store whose cards give training costs (default ``$RBC_HOME``). ``eps``: norm ->
    epsilon to rank at (default per board: the largest epsilon every entry was evaluated at). The boards of
    :mod:`~robustbench_cnn.reporting.boards_extra` (certified vs empirical, corruptions, minimal norm) come from
    the run's tables; ``reference``: a RobustBench ``model_info`` folder shown as external rows.
    Returns (Markdown path, HTML path). Raises :class:`RbcError` for a folder that is not a run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RbcError(f"run folder {run_dir} does not exist")
    out = Path(out_dir) if out_dir is not None else run_dir
    summary = load_run_summary(run_dir)
    boards = leaderboards(summary, store, eps)
    transfer = read_transfer(run_dir)
    figs = _figures(boards, transfer, _examples(run_dir))
    flag_uses = _flag_uses(summary) if len(summary) else {}
    title = f"robustbench-cnn leaderboard: {run_dir.name}"
    meta = _meta(run_dir, summary)
    image_dir = out / IMAGES_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    for fig in (f for items in figs.values() for f in items):
        tmp = image_dir / f".{fig.name}.tmp"
        tmp.write_bytes(fig.png)
        os.replace(tmp, image_dir / fig.name)
    md_path, html_path = out / "leaderboard.md", out / "leaderboard.html"
    extra = boards_extra.extra_boards(run_dir, reference)
    atomic_write_text(
        boards_extra.add_markdown(render_markdown(title, meta, boards, figs, transfer, flag_uses), extra), md_path
    )
    atomic_write_text(
        boards_extra.add_html(render_html(title, meta, boards, figs, transfer, flag_uses), extra), html_path
    )
    return md_path, html_path


__all__ = [
    "Board",
    "leaderboards",
    "pareto_front",
    "read_transfer",
    "render_html",
    "render_markdown",
    "worst_case",
    "write_report",
]
