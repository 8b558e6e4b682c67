"""What the commands print: results to stdout as rich tables, warnings to stderr.

Tables fit the terminal instead of truncating figures: numbers never wrap or shrink (``87.3 ±2.1`` stays whole),
text columns fold onto more lines, a common dataset prefix of the model names is dropped (and said in the title),
and when even that is too wide, the least important columns are left out, named in the caption. The width is the
click context's ``terminal_width`` when set, else the terminal's; piped output without ``COLUMNS`` is wide (240),
so files and pipes get whole tables. Accuracies and rates are percent with one decimal, with the larger distance
to an end of the 95% interval where the table has it.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported when something is printed, not when `rbc --help` loads the commands
    import pandas as pd
    from rich.table import Table

#: Width of piped output (no terminal, no ``COLUMNS``): wide, so that tables written to files stay whole.
PIPE_WIDTH = 240


def terminal_width() -> int | None:
    """The width tables are laid out for: the click context's ``terminal_width`` when one was set (e.g.
    ``CliRunner().invoke(..., terminal_width=80)``), None on a terminal (rich measures it, honouring ``COLUMNS``),
    else ``COLUMNS`` when set, else :data:`PIPE_WIDTH`."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.terminal_width:
        return int(ctx.terminal_width)
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH


class _Out:
    """Results go to stdout (progress and warnings go to stderr), laid out for :func:`terminal_width`."""

    def console(self) -> Any:
        from rich.console import Console

        return Console(width=terminal_width())

    @property
    def width(self) -> int:
        return int(self.console().width)

    def print(self, *objects: Any) -> None:
        self.console().print(*objects)


out = _Out()


# ------------------------------------------------------------------------------------------ formatting


def fmt(value: Any) -> str:
    """A table cell: floats with 4 decimals, None and NaN empty, anything else as text."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def pct(value: Any, lo: Any = None, hi: Any = None) -> str:
    """A rate in [0, 1] as percent with one decimal, ``87.3 ±2.1`` when its interval is known; empty for NaN."""
    from robustbench_cnn.core.statistics import format_ci

    try:
        rate = float(value)
    except (TypeError, ValueError):
        return ""
    if math.isnan(rate):
        return ""

    def num(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    return format_ci(rate, num(lo), num(hi))


def common_prefix(names: Sequence[str]) -> str:
    """The ``dataset/`` prefix every name shares (``digits/`` for ``digits/a`` and ``digits/b``), else ``""``."""
    heads = {n.split("/", 1)[0] + "/" if "/" in n else "" for n in names}
    return heads.pop() if len(heads) == 1 and names else ""


# ------------------------------------------------------------------------------------------ tables


@dataclass(frozen=True)
class Col:
    """A column of a fitted table (:func:`fit_table`).

    ``key`` in the rows and its ``header``; ``numeric``: numbers, right-aligned, never wrapped or shrunk;
    ``drop``: 0 always kept, higher numbers are left out first when the terminal is too narrow; ``flex``: free text
    that may fold onto more lines (down to :data:`FLEX_MIN` characters); ``note``: a remark per row that moves
    under the table, after the row it belongs to, when it does not fit beside it."""

    key: str
    header: str
    numeric: bool = False
    drop: int = 0
    flex: bool = False
    note: bool = False


#: The narrowest a foldable text column is made before columns are left out.
FLEX_MIN = 16


def _natural(col: Col, cells: list[Any]) -> int:
    """The width a column takes unfolded: its longest cell, or its header's longest word (headers wrap)."""
    from rich.cells import cell_len

    longest = max((cell_len(str(c)) for c in cells), default=0)
    return max(longest, max((len(w) for w in col.header.split()), default=0))


def fit_table(
    title: str,
    rows: list[dict[str, Any]],
    cols: Sequence[Col],
    width: int | None = None,
    caption: str = "",
    drop_empty: bool = True,
) -> Table:
    """A rich table of ``rows`` (cells formatted as text, or rich ``Text`` for styled cells) that fits ``width``
    (default: the output's).

    Columns whose cells are all empty are left out (with ``drop_empty``). While the table is wider than ``width``
    (``flex`` columns counted at :data:`FLEX_MIN`), the column with the highest ``drop`` order goes (named in the
    caption), then a ``note`` column moves under the table (``- <row>: <note>``). Numbers and the other text never
    wrap or shrink; only ``flex`` text folds. If the columns always kept are still too wide, every text column
    folds (never an ellipsis)."""
    from rich.table import Table

    width = width or out.width
    cells = {c.key: ["" if r.get(c.key) is None else r.get(c.key) for r in rows] for c in cols}
    cells = {k: [v if hasattr(v, "cell_len") else str(v) for v in values] for k, values in cells.items()}
    keep = [c for c in cols if not drop_empty or any(str(v) for v in cells[c.key]) or not rows]
    dropped: list[str] = []
    below: Col | None = None

    def need(columns: list[Col]) -> int:  # each cell has one space of padding either side, plus the rules
        widths = [_natural(c, cells[c.key]) for c in columns]
        widths = [min(w, FLEX_MIN) if c.flex else w for c, w in zip(columns, widths)]
        return sum(widths) + 3 * len(columns) + 1

    while need(keep) > width:
        if any(c.drop for c in keep):
            worst = max((c for c in keep if c.drop), key=lambda c: (c.drop, keep.index(c)))
            keep.remove(worst)
            dropped.append(worst.header)
        elif below is None and any(c.note for c in keep):
            below = next(c for c in keep if c.note)
            keep.remove(below)
        else:
            break
    fits = need(keep) <= width
    notes = [caption] if caption else []
    if below is not None:
        ident = [c for c in keep if not c.numeric][:4] + [c for c in keep if c.numeric][:1]
        notes += [
            f"- {' '.join(str(cells[c.key][i]) for c in ident)}: {cells[below.key][i]}"
            for i in range(len(rows))
            if str(cells[below.key][i])
        ]
    if dropped:
        notes.append(f"left out at {width} columns: {', '.join(dropped)} (widen the terminal or pipe the output)")
    table = Table(title=title, caption="\n".join(notes) or None, caption_justify="left")
    for col in keep:
        natural = _natural(col, cells[col.key])
        if col.numeric:
            table.add_column(col.header, justify="right", no_wrap=True, min_width=natural)
        elif fits and not col.flex:
            table.add_column(col.header, no_wrap=True, min_width=natural)
        else:
            table.add_column(col.header, overflow="fold")
    for i in range(len(rows)):
        table.add_row(*[cells[c.key][i] for c in keep])
    return table


#: Column names that hold a rate in [0, 1] (``clean_acc``, ``pgd10_acc``, ``pgd_accuracy``, ``success_rate``):
#: :func:`table` shows them in percent with one decimal, ``%`` added to the header.
_RATE_NAME = re.compile(r"(^|_)(acc|accuracy|rate)$")


def _is_rate_column(name: str, rows: list[dict[str, Any]]) -> bool:
    """Whether column ``name`` is named like a rate and every number in it lies in [0, 1]."""
    values = [float(r[name]) for r in rows if isinstance(r.get(name), (int, float)) and r[name] == r[name]]
    return bool(_RATE_NAME.search(name)) and bool(values) and all(0.0 <= v <= 1.0 for v in values)


def table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    """A rich table titled ``title`` of ``rows`` (dicts), with ``columns`` (default: the first row's keys), fitted
    to the terminal (:func:`fit_table`; every column kept, numbers whole, text folded). A column named like a rate
    (``*_acc``, ``*_accuracy``, ``*_rate``) whose values are all in [0, 1] is shown in percent with one decimal."""
    columns = columns or (list(rows[0]) if rows else [])
    numeric = {c for c in columns if rows and all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)}
    rates = {c for c in numeric if _is_rate_column(c, rows)}
    cols = [Col(c, f"{c} %" if c in rates else c, numeric=c in numeric) for c in columns]
    cells = [{c: pct(r.get(c)) if c in rates else fmt(r.get(c)) for c in columns} for r in rows]
    return fit_table(title, cells, cols, drop_empty=False)


# ------------------------------------------------------------------------------------------ run summaries

#: The columns of a run summary in the terminal; ``drop``: which go first when the terminal is too narrow.
SUMMARY_COLUMNS = (
    Col("model", "model"),
    Col("setting", "setting", drop=3),
    Col("cascade", "cascade"),
    Col("attack", "attack"),
    Col("target", "target"),
    Col("eps", "eps", numeric=True),
    Col("n", "n", numeric=True, drop=5),
    Col("clean", "clean %", numeric=True, drop=2),
    Col("robust", "robust %", numeric=True),
    Col("success", "success %", numeric=True, drop=4),
    Col("norm_", "mean norm", numeric=True, drop=6),
    Col("queries", "mean queries", numeric=True, drop=7),
    Col("flags", "flags", drop=1, flex=True),
)
#: Text columns that move into the title when every row has the same value (``cascade quick``).
_CONSTANT_TO_TITLE = ("model", "setting", "cascade", "attack", "target")


def summary_rows(summary: pd.DataFrame) -> tuple[list[dict[str, str]], str]:
    """The terminal rows of a summary table (cells as text: percent with one decimal and the 95% interval) and the
    dataset prefix dropped from the model names (``""`` when the models do not share one)."""
    import pandas as pd

    from robustbench_cnn.core.types import format_eps

    def text(value: Any) -> str:
        return "" if value is None or pd.isna(value) else str(value)

    if not len(summary):
        return [], ""
    frame = summary.reset_index(drop=True)
    models = [str(m) for m in frame["model"].astype("string").fillna("")]
    prefix = common_prefix(models)
    kinds = frame["attack_kind"].astype("string").fillna("") if "attack_kind" in frame else None
    rows = []
    for i, rec in enumerate(frame.to_dict("records")):
        targeted = text(rec.get("targeted")) == "True"
        transfer = kinds is not None and kinds.iloc[i] == "transfer"
        queries = _float(rec.get("mean_queries"))
        rows.append(
            {
                "model": models[i][len(prefix) :],
                "setting": "black-box" if transfer else "white-box",
                "cascade": text(rec.get("cascade")),
                "attack": text(rec.get("attack")),
                "target": (text(rec.get("target_policy")) or "targeted") if targeted else "-",
                "eps": format_eps(float(rec["eps"])) if text(rec.get("eps")) else "",
                "n": str(int(rec["n"])) if text(rec.get("n")) else "",
                "clean": pct(rec.get("clean_acc"), rec.get("clean_acc_lo"), rec.get("clean_acc_hi")),
                "robust": pct(rec.get("robust_acc"), rec.get("robust_acc_lo"), rec.get("robust_acc_hi")),
                "success": pct(rec.get("success_rate")),
                "norm_": fmt(_float(rec.get("mean_norm"))),
                "queries": fmt(queries) if queries else "",  # white-box attacks query nothing: left empty
                "flags": text(rec.get("flags")).replace(";", " "),
                "_source": text(rec.get("source")),
            }
        )
    return rows, prefix


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summary_table(
    summary: pd.DataFrame, title: str = "summary", width: int | None = None, columns: Sequence[str] | None = None
) -> Table:
    """The terminal table of a summary (:func:`summary_rows`, :data:`SUMMARY_COLUMNS`, only ``columns`` when given)
    fitted to ``width`` (:func:`fit_table`): every figure whole, the shared dataset prefix of the model names
    dropped, a text column with one value on every row said once in the title, ``target`` the target policy
    (``-``: untargeted), ``setting`` white-box or black-box (transfer from the ``source`` models)."""
    rows, prefix = summary_rows(summary)
    cols = [c for c in SUMMARY_COLUMNS if columns is None or c.key in columns]
    said = []
    if len(rows) > 1:
        for col in [c for c in cols if c.key in _CONSTANT_TO_TITLE]:
            values = {r[col.key] for r in rows}
            if len(values) == 1:
                cols.remove(col)
                value = prefix + values.pop() if col.key == "model" else values.pop()
                if value not in ("", "-"):
                    said.append(f"{col.header} {value}")
                elif col.key == "target":
                    said.append("untargeted")
    if prefix and any(c.key == "model" for c in cols):
        said.insert(0, f"{prefix.rstrip('/')} models")
    if said:
        title = f"{title} ({', '.join(said)})"
    notes = []
    sources = sorted({r["_source"] for r in rows if r["_source"]})
    if sources:
        notes.append(f"black-box: transfer from {', '.join(s[len(prefix) :] for s in sources)}")
    from robustbench_cnn.core.statistics import PLUS_MINUS

    notes.append(
        f"clean and robust accuracy in percent of the n points, {PLUS_MINUS} (asymmetric near 0 and 100); "
        "success % of the attacked points"
    )
    return fit_table(title, rows, cols, width, caption="\n".join(notes))


def show_summary(summary: Any, title: str = "summary", columns: Sequence[str] | None = None) -> None:
    """Print a run's summary as a fitted table (:func:`summary_table`) and its validity flags as warnings
    (stderr)."""
    from robustbench_cnn.evaluation.flags import EXPLANATIONS

    out.print(summary_table(summary, title, columns=columns))
    codes = sorted({c for f in summary["flags"].dropna() for c in str(f).split(";") if c}) if len(summary) else []
    for code in codes:
        click.secho(f"Warning [{code}]: {EXPLANATIONS.get(code, code)}", fg="yellow", err=True)
