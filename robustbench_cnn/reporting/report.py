"""The leaderboard of a run folder: ``leaderboard.md`` and a self-contained ``leaderboard.html``.

``write_report("results/run-...")`` reads the run's tables (``summary.parquet``, and when present
``samples.parquet``, ``transfer_matrix.parquet`` and ``examples.npz``) and the model cards of the store, and writes,
per dataset x threat model (norm, target policy for targeted runs, white-box or black-box transfer):

- a ranked table: model, defense, clean accuracy, worst-case robust accuracy at the selected epsilon (the
  cascade's ``worst-case`` row, or the single attack's row when a cell ran one attack) with the 95% Clopper-Pearson
  intervals of both, the targeted success rate (targeted boards) or the transfer success rate and attacked points
  (black-box boards), the robust accuracy after each attack of the cascade, whether a model is significantly more
  robust than the next one (paired exact McNemar test on the same points, from ``samples.parquet``), the
  validity flags (the evaluation's, and the training events the model cards record: guard collapses and
  restores, training problems) and the training cost;
- the robust accuracy (with its interval) at every epsilon, model x eps;
- robustness curves (accuracy against epsilon, one line per model, on one epsilon axis per threat model) and the
  clean/robust trade-off scatter with its Pareto front;

then the transfer heatmap, the adversarial example grid and the flags with their explanations. A model has one
colour in every figure (the colour key on top), legends list models in one order, every figure is in percent with
one decimal and says on how many points. The HTML embeds every image as a base64 ``data:`` URI and its CSS
inline, and its Content-Security-Policy forbids any other source, so it opens offline and loads nothing. The
Markdown links the same PNGs, written to ``leaderboard_files/`` beside it. This module reads tables only: it runs
no model and no attack.
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
from robustbench_cnn.core.statistics import ALPHA, PLUS_MINUS, format_ci
from robustbench_cnn.core.types import format_eps
from robustbench_cnn.evaluation.examples import EXAMPLES_FILE, load_examples
from robustbench_cnn.evaluation.flags import EXPLANATIONS
from robustbench_cnn.reporting import boards_extra
from robustbench_cnn.reporting.paired import SampleIndex, compare_outcomes, read_samples
from robustbench_cnn.tables.results import RunStore, atomic_write_text, read_summary, with_cascade, with_ci_columns

TRANSFER_FILE = "transfer_matrix.parquet"
IMAGES_DIR = "leaderboard_files"
WORST_CASE = "worst-case"
#: Most example rows drawn in the grid (the first ones per model, models in file order).
MAX_EXAMPLE_ROWS = 12

#: Flag codes for what a model card records about training (``defenses.train.defend``: the overfitting guard's
#: events in ``extra["defense_report"]["guard"]["events"]``, the warnings in ``extra["training_problems"]``).
TRAINING_EXPLANATIONS = {
    "guard-collapse": "during training, the catastrophic-overfitting guard saw PGD accuracy on its fixed training "
    "batch fall by more than its threshold (Wong, Rice, Kolter 2020): single-step adversarial training broke down "
    "at least once; the evaluated weights may come from a recovered or restored state, so check the model's "
    "curve and its flags",
    "guard-restored": "the guard restored the weights of an earlier epoch at the end of training: the evaluated "
    "model is that epoch's",
    "guard-gap": "after the last epoch, training accuracy was far above the guard's PGD accuracy: the model fits "
    "its training attack rather than being robust",
    "training-problem": "the training monitor recorded a problem (see the detail)",
    "monitor-masking": "during training, a masking probe of the per-epoch monitor (FGSM without random start, or a "
    "short gradient-free Square run) broke points that the monitor's PGD could not: gradients were masked and the "
    "monitor's PGD accuracy over-stated robustness at that epoch",
    "monitor-overstated": "the per-epoch monitor's PGD accuracy of the saved model is far above the default "
    "cascade's robust accuracy measured at the end of training: the monitor was fooled (masked gradients)",
}
_GUARD_CODES = {"collapse": "guard-collapse", "restored": "guard-restored", "gap": "guard-gap"}

#: What the target policies of targeted attacks mean (``attacks.targets``).
POLICY_TEXT = {
    "random": "each point's target drawn uniformly among the other classes (seeded)",
    "least-likely": "the class the model finds least likely on the clean input",
    "next": "the next class, (label + 1) mod K",
    "all": "every class in turn",
}


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
    """One leaderboard: a dataset x norm (x target policy, x setting), its ranked entries and robustness curves."""

    dataset: str
    norm: str
    targeted: bool
    target_policy: str
    eps: float  # the epsilon the ranking uses
    #: ranked rows: rank, model, defense, cascade, n, clean_acc (+ _lo, _hi), robust_acc (+ _lo, _hi),
    #: success_rate, attacked, one per attack, vs_next / p_next (McNemar against the next entry), flags,
    #: train_cost, label (the entry's name in the curves)
    entries: pd.DataFrame
    attacks: list[str]  # per-attack columns, in cascade order
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    setting: str = "white-box"  # or "black-box": transfer through a proxy, ranked on its own board
    #: every entry at every epsilon: label, model, cascade, eps, n, robust_acc (+ _lo, _hi), success_rate
    by_eps: pd.DataFrame = field(default_factory=pd.DataFrame)
    labels: dict[str, str] = field(default_factory=dict)  # curve label -> model
    x_ticks: list[float] = field(default_factory=list)  # the epsilon axis shared by the boards of a dataset x norm
    note: str = ""  # what the board measures, where that needs saying (targeted, black-box)
    paired: int = 0  # McNemar comparisons made (0: no per-sample table for this board)

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

    def n_text(self) -> str:
        """The number of points per model: ``450``, or ``350-450`` when entries differ."""
        ns = sorted({int(v) for v in self.entries["n"].dropna()}) if len(self.entries) else []
        return "?" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


_GROUP = ["dataset", "norm", "setting", "targeted", "target_policy"]
_ENTRY = ["model", "cascade"]


def _normalized(summary: pd.DataFrame) -> pd.DataFrame:
    frame = with_ci_columns(with_cascade(summary)).copy()
    for col in ("dataset", "norm", "target_policy", "model", "cascade", "defense", "flags", "attack"):
        frame[col] = frame[col].astype("string").fillna("") if col in frame else ""
    frame["targeted"] = frame["targeted"].astype("boolean").fillna(False).astype(bool) if "targeted" in frame else False
    frame.loc[~frame["targeted"], "target_policy"] = ""
    kinds = frame["attack_kind"].astype("string").fillna("") if "attack_kind" in frame else pd.Series("", frame.index)
    frame["setting"] = np.where(kinds == "transfer", "black-box", "white-box")
    for col in ("eps", "clean_acc", "robust_acc", "clean_acc_lo", "clean_acc_hi", "robust_acc_lo", "robust_acc_hi"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["success_rate"] = (
        pd.to_numeric(frame["success_rate"], errors="coerce").astype(float) if "success_rate" in frame else np.nan
    )
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


def _pct1(value: Any) -> str:
    """A rate in [0, 1] as ``87.3%`` (empty when not a number)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{100 * v:.1f}%"


def training_events(cards: Mapping[str, Any], models: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """model -> [(flag code, detail)] for what the model cards of ``models`` record about training: the overfitting
    guard's events (``guard-collapse``, ``guard-restored``, ``guard-gap``), the training monitor's problems
    (``training-problem``), its masking probes' events (``monitor-masking``) and a monitor the end-of-training
    evaluation contradicts (``monitor-overstated``); see :data:`TRAINING_EXPLANATIONS`. Models without a card or events are left out."""
    events: dict[str, list[tuple[str, str]]] = {}
    for model in dict.fromkeys(models):
        card = cards.get(model)
        extra = (getattr(card, "extra", None) or {}) if card is not None else {}
        found = []
        guard = (extra.get("defense_report") or {}).get("guard") or {}
        for ev in guard.get("events") or []:
            code = _GUARD_CODES.get(str(ev.get("event")))
            if code is None:
                continue
            epoch, best = ev.get("epoch"), ev.get("best_epoch")
            before, after = _pct1(ev.get("before")), _pct1(ev.get("after"))
            if code == "guard-collapse":
                detail = f"epoch {epoch}: guard PGD accuracy {after}, down from {before} at epoch {best}"
            elif code == "guard-restored":
                detail = f"after epoch {epoch} ({before}), the weights of epoch {best} ({after}) were restored"
            else:
                detail = f"after epoch {epoch}: training accuracy {before}, guard PGD accuracy {after}"
            found.append((code, detail))
        found += [("training-problem", str(problem)) for problem in extra.get("training_problems") or []]
        for ev in (extra.get("monitor_masking") or {}).get("events") or []:
            found.append(
                (
                    "monitor-masking",
                    f"epoch {ev.get('epoch')}: probe {ev.get('probe')} broke {ev.get('broken_beyond_pgd')} of "
                    f"{ev.get('n')} points beyond PGD ({_pct1(ev.get('probe_accuracy'))} vs "
                    f"{_pct1(ev.get('pgd_accuracy'))})",
                )
            )
        final = extra.get("final_eval") or {}
        if final.get("monitor_overstated"):
            found.append(
                (
                    "monitor-overstated",
                    f"monitor PGD {_pct1(final.get('monitor_pgd_accuracy'))} vs {final.get('cascade')} cascade "
                    f"{_pct1(final.get('robust_accuracy'))} (n={final.get('n')})",
                )
            )
        if found:
            events[model] = found
    return events


def _policy_text(policy: str) -> str:
    if policy.startswith("class:"):
        return f"every point sent to class {policy.split(':', 1)[1]}"
    return POLICY_TEXT.get(policy, policy)


def _black_box_note(cells: pd.DataFrame, frame: pd.DataFrame, cards: Mapping[str, Any]) -> str:
    """What a black-box board measures: the proxy (its card: architecture, target, oracle queries and budget, held-out
    accuracy and agreement), the attack, the points (and why they differ from the white-box board's), the cost."""
    attacks = ", ".join(dict.fromkeys(a for a in cells["attack"] if a))
    sources = list(
        dict.fromkeys(s for v in cells.get("source", pd.Series(dtype=str)).dropna() for s in str(v).split(",") if s)
    )
    parts = [
        f"Black-box transfer: adversarial examples crafted with {attacks or 'the source attack'} on a white-box "
        f"source model and scored on each model below, which is only queried for labels (one query per attacked point)."
    ]
    for name in sources:
        card = cards.get(name)
        if card is None:
            parts.append(f"Source: {name} (no model card in the store).")
            continue
        extra = card.extra or {}
        hyper = card.hyperparameters or {}
        if card.recipe == "substitute":
            seed = (extra.get("seed_set") or {}).get("size", hyper.get("seed_size"))
            budget = hyper.get("budget")
            bits = [
                f"Source: the proxy {name}, a {card.arch} substitute of {extra.get('target', '?')} trained "
                f"(Papernot et al. 2017) from {extra.get('queries', '?')} oracle label queries"
                + (f" of a budget of {budget}" if budget else "")
                + (f", starting from {seed} test points" if seed else "")
            ]
            if card.clean_accuracy is not None:
                held = hyper.get("holdout_n")
                bits.append(
                    f"its accuracy is {_pct1(card.clean_accuracy)}"
                    + (f" on {held} held-out test points" if held else "")
                    + (
                        f", agreeing with its target on {_pct1(extra.get('agreement'))} of them"
                        if extra.get("agreement") == extra.get("agreement") and extra.get("agreement") is not None
                        else ""
                    )
                )
            parts.append("; ".join(bits) + ".")
        else:
            acc = f", clean accuracy {_pct1(card.clean_accuracy)}" if card.clean_accuracy is not None else ""
            parts.append(f"Source: {name} ({card.arch}, {card.recipe}{acc}).")
    ns = sorted({int(v) for v in cells["n"].dropna()})
    white = frame[
        (frame["setting"] == "white-box")
        & (frame["dataset"].isin(set(cells["dataset"])))
        & (frame["norm"].isin(set(cells["norm"])))
    ]
    white_ns = sorted({int(v) for v in white["n"].dropna()})
    if ns:
        text = f"Points: the first {'/'.join(map(str, ns))} test points"
        if any(card is not None and card.recipe == "substitute" for card in map(cards.get, sources)):
            text += ", disjoint from the proxy's seed set"
        if white_ns and white_ns != ns:
            text += (
                f" (the white-box boards use {'/'.join(map(str, white_ns))}: n and clean accuracies differ "
                "between the boards)"
            )
        parts.append(text + ". Only the points a model classifies correctly are attacked (column attacked).")
    return " ".join(parts)


def _mcnemar_marks(table: pd.DataFrame, outcomes: dict[tuple[str, str], pd.DataFrame | None]) -> tuple[list, list, int]:
    """For each ranked entry, the paired exact McNemar test of its robust outcomes against the next entry's:
    (mark texts, p-values, tests made). A mark is empty where either has no per-sample outcomes or they are
    not over the same points."""
    marks, pvalues, made = [], [], 0
    keys = list(zip(table["model"], table["cascade"]))
    for i, key in enumerate(keys):
        mark, p = "", float("nan")
        if i + 1 < len(keys):
            a, b = outcomes.get(key), outcomes.get(keys[i + 1])
            res = compare_outcomes(a, b, "robust") if a is not None and b is not None else None
            if res is not None:
                made += 1
                p = res.p_value
                p_text = f"p={p:.2g}" if p >= 0.001 else "p<0.001"
                mark = f"> #{i + 2} ({p_text})" if res.significant else f"≈ #{i + 2} ({p_text}, n.s.)"
        marks.append(mark)
        pvalues.append(p)
    return marks, pvalues, made


def leaderboards(
    summary: pd.DataFrame,
    store: str | os.PathLike | None = None,
    eps: Mapping[str, float] | None = None,
    samples: pd.DataFrame | None = None,
) -> list[Board]:
    """The ranked leaderboards of a summary table, one per dataset x norm (x target policy, x setting).

    ``eps`` maps a norm to the epsilon to rank at (default: the largest epsilon every entry of the board
    was evaluated at). Entries rank by robust accuracy, then clean accuracy (both descending), then name;
    entries without a result at the selected epsilon come last. Training cost and training events come from the
    cards of the model store ``store`` (``$RBC_HOME`` by default), blank for models it does not hold. With the
    run's per-sample table ``samples``, each entry is compared with the next one by the paired exact McNemar test
    of their robust outcomes at the selected epsilon (two-sided, 5%, not corrected for the several comparisons).
    """
    if not len(summary):
        return []
    frame = _normalized(summary)
    worst = worst_case(frame)
    cards = _cards(store)
    training = training_events(cards, list(frame["model"]))
    index = SampleIndex(samples, frame)
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
        rows, curves, labels, by_eps = [], {}, {}, []
        outcomes: dict[tuple[str, str], pd.DataFrame | None] = {}
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
            last = entry.iloc[-1]
            hit = at.iloc[-1] if len(at) else None
            label = f"{model} ({cascade})" if multi_cascade else str(model)
            row = {
                "model": model,
                "defense": defense,
                "cascade": cascade,
                "n": last["n"],
                "clean_acc": float(last["clean_acc"]),
                "clean_acc_lo": float(last["clean_acc_lo"]),
                "clean_acc_hi": float(last["clean_acc_hi"]),
                "robust_acc": float(hit["robust_acc"]) if hit is not None else float("nan"),
                "robust_acc_lo": float(hit["robust_acc_lo"]) if hit is not None else float("nan"),
                "robust_acc_hi": float(hit["robust_acc_hi"]) if hit is not None else float("nan"),
                "success_rate": float(hit["success_rate"]) if hit is not None else float("nan"),
                "attacked": hit.get("attacked", pd.NA) if hit is not None else pd.NA,
            }
            for attack in attacks:
                one = at_cells[at_cells["attack"] == attack]
                row[attack] = float(one["robust_acc"].iloc[-1]) if len(one) else float("nan")
            codes = set(_codes(all_cells["flags"])) | {code for code, _ in training.get(str(model), [])}
            row["flags"] = ";".join(sorted(codes))
            row["train_cost"] = _train_cost(card)
            row["label"] = label
            rows.append(row)
            outcomes[(model, cascade)] = index.outcomes(hit.to_dict())[0] if hit is not None else None
            curves[label] = list(zip(entry["eps"].tolist(), entry["robust_acc"].tolist()))
            labels[label] = str(model)
            for rec in entry.to_dict("records"):
                by_eps.append(
                    {
                        "label": label,
                        "model": model,
                        "cascade": cascade,
                        **{k: rec.get(k) for k in ("eps", "n", "robust_acc", "robust_acc_lo", "robust_acc_hi")},
                        "success_rate": rec.get("success_rate"),
                    }
                )
        table = pd.DataFrame(rows)
        table["_missing"] = table["robust_acc"].isna()
        table = table.sort_values(
            ["_missing", "robust_acc", "clean_acc", "model", "cascade"],
            ascending=[True, False, False, True, True],
            kind="mergesort",
        )
        table = table.drop(columns="_missing").reset_index(drop=True)
        table.insert(0, "rank", range(1, len(table) + 1))
        marks, pvalues, made = _mcnemar_marks(table, outcomes)
        table["vs_next"], table["p_next"] = marks, pvalues
        note = ""
        if setting == "black-box":
            note = _black_box_note(cells, frame, cards)
        elif targeted:
            note = (
                f"Targeted attacks, target policy {policy}: {_policy_text(str(policy))}. Robust % is the share of "
                "the n points the attack did not move to their target class (a misclassified point is not robust); "
                "target success % is the share of the attacked points (correctly classified, target other than "
                "the label) moved to their target."
            )
        boards.append(
            Board(
                str(dataset),
                str(norm),
                bool(targeted),
                str(policy),
                sel,
                table,
                attacks,
                curves,
                str(setting),
                pd.DataFrame(by_eps),
                labels,
                note=note,
                paired=made,
            )
        )
    for key in {(b.dataset, b.norm) for b in boards}:  # one epsilon axis per dataset x norm
        same = [b for b in boards if (b.dataset, b.norm) == key]
        ticks = sorted({float(e) for b in same for e in b.by_eps["eps"].dropna()})
        for b in same:
            b.x_ticks = ticks
    return boards


def model_order(boards: Sequence[Board]) -> list[str]:
    """Every model of the boards once, in the report's one legend order: the first board's ranking, then the
    models only later boards have, in their ranking order."""
    return list(dict.fromkeys(str(m) for b in boards for m in b.entries["model"]))


# ------------------------------------------------------------------------------------------ transfer, examples


def read_transfer(run_dir: Path) -> list[tuple[str, pd.DataFrame]]:
    """The transfer matrix of a run folder as (title, source x target grid) pairs, one per attack x threat (the title
    says on how many attacked points each pair's rate is); empty when the folder has no ``transfer_matrix.parquet``."""
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
        if "n" in part.columns and part["n"].notna().any():
            ns = sorted({int(v) for v in part["n"].dropna()})
            bits.append(f"n = {ns[0]}" + (f"-{ns[-1]}" if len(ns) > 1 else "") + " attacked points per pair")
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


def _example_rows(
    ex: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], list[str], list[str]]:
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
    return ex["x"][keep], ex["x_adv"][keep], captions, labels, [models[i] for i in keep]


def _examples_threat(ex: dict[str, np.ndarray]) -> str:
    """``linf eps = 0.1 (pgd)``: the threat models and attacks of the example file, for its caption."""
    threats = []
    if "norm" in ex and "eps" in ex:
        threats = list(dict.fromkeys(f"{n} eps = {format_eps(float(e))}" for n, e in zip(ex["norm"], ex["eps"])))
    attacks = list(dict.fromkeys(str(a) for a in ex["attack"])) if "attack" in ex else []
    text = ", ".join(threats)
    return text + (f" ({', '.join(attacks)})" if attacks else "")


def _short(model: str) -> str:
    return model.split("/", 1)[-1] if len(model) > 18 else model


# ------------------------------------------------------------------------------------------ rendering


@dataclass
class Rendered:
    """A rendered figure: file name (Markdown), alt text and PNG bytes (HTML data URI)."""

    name: str
    alt: str
    png: bytes
    note: str = ""  # what the figure shows, for the text around it

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{100 * v:.1f}"


def _interval(lo: Any, hi: Any) -> str:
    """``56.1-63.9``: a 95% interval in percent with one decimal (empty when unknown)."""
    a, b = _pct(lo), _pct(hi)
    return f"{a}-{b}" if a and b else ""


#: Numeric table columns (right-aligned).
_NUMERIC = {"rank", "n", "clean_acc", "robust_acc", "robust_ci", "clean_ci", "success_rate", "attacked"}


def _columns(board: Board) -> list[tuple[str, str]]:
    """(key, header) of a board's ranked table."""
    eps = format_eps(board.eps)
    cols = [
        ("rank", "#"),
        ("model", "model"),
        ("defense", "defense"),
        ("cascade", "cascade"),
        ("n", "n"),
        ("clean_acc", "clean %"),
        ("robust_acc", f"robust % @ {board.norm}:{eps}"),
        ("robust_ci", "robust 95% CI"),
        ("clean_ci", "clean 95% CI"),
    ]
    if board.targeted:
        cols.append(("success_rate", f"target success % @ {eps}"))
    if board.setting == "black-box":
        cols += [("success_rate", f"transfer success % @ {eps}"), ("attacked", "attacked")]
    if len(board.attacks) > 1:  # one attack: its column is the robust column
        cols += [(a, f"{a} %") for a in board.attacks]
    if board.paired:
        cols.append(("vs_next", "vs next (McNemar)"))
    cols += [("flags", "flags"), ("train_cost", "train cost")]
    return cols


def _cell(key: str, row: Mapping[str, Any], attacks: list[str]) -> str:
    if key == "robust_ci":
        return _interval(row.get("robust_acc_lo"), row.get("robust_acc_hi"))
    if key == "clean_ci":
        return _interval(row.get("clean_acc_lo"), row.get("clean_acc_hi"))
    value = row.get(key)
    if key in ("clean_acc", "robust_acc", "success_rate") or key in attacks:
        return _pct(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _eps_tables(board: Board) -> list[tuple[str, list[str], list[list[str]]]]:
    """The model x eps tables of a board: (caption, headers, rows): robust accuracy with its 95% interval at every
    epsilon, and for a targeted board the target success rate."""
    frame = board.by_eps
    if not len(frame):
        return []
    ticks = sorted({float(e) for e in frame["eps"].dropna()})
    multi = frame["cascade"].nunique() > 1
    headers = ["model"] + (["cascade"] if multi else []) + ["n"] + [f"{board.norm}:{format_eps(e)}" for e in ticks]
    order = list(board.entries["label"])
    tables = []
    values = [("robust", f"robust accuracy % {PLUS_MINUS}")]
    if board.targeted:
        values.append(("success", "target success % of the attacked points"))
    for value, caption in values:
        rows = []
        for label in order:
            part = frame[frame["label"] == label]
            if not len(part):
                continue
            first = part.iloc[0]
            cells = [str(first["model"])] + ([str(first["cascade"])] if multi else [])
            ns = sorted({int(v) for v in part["n"].dropna()})
            cells.append("/".join(map(str, ns)))
            for eps in ticks:
                hit = part[np.isclose(part["eps"].astype(float), eps, rtol=0, atol=1e-12)]
                if not len(hit):
                    cells.append("")
                    continue
                rec = hit.iloc[-1]
                if value == "robust":
                    cells.append(
                        format_ci(_num(rec["robust_acc"]), _num(rec["robust_acc_lo"]), _num(rec["robust_acc_hi"]))
                    )
                else:
                    cells.append(_pct(rec["success_rate"]))
            rows.append(cells)
        tables.append((f"{caption}, at every epsilon", headers, rows))
    return tables


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _figures(
    boards: list[Board],
    transfer: list[tuple[str, pd.DataFrame]],
    examples: dict[str, np.ndarray] | None,
    colours: Mapping[str, str],
) -> dict[str, list[Rendered]]:
    from robustbench_cnn.reporting import plots

    order = list(colours)
    figs: dict[str, list[Rendered]] = {}
    for board in boards:
        n = board.n_text()
        labels = sorted(board.curves, key=lambda lab: (order.index(board.labels[lab]), lab))
        cascades = list(dict.fromkeys(board.entries["cascade"]))
        styles = {
            lab: plots.LINESTYLES[cascades.index(c) % len(plots.LINESTYLES)]
            for lab, c in zip(board.entries["label"], board.entries["cascade"])
        }
        ticks = board.x_ticks or None
        items = [
            Rendered(
                f"curves-{board.slug}.png",
                f"robustness curves, {board.title} (n = {n} points per model)",
                plots.curves_png(
                    board.curves,
                    f"{board.title}: robust accuracy vs epsilon",
                    f"epsilon ({board.norm})",
                    colours={lab: colours[board.labels[lab]] for lab in labels},
                    linestyles=styles,
                    order=labels,
                    xlim=(min(ticks), max(ticks)) if ticks else None,
                    xticks=ticks,
                ),
            )
        ]
        table = board.entries
        ok = table["robust_acc"].notna().to_numpy()
        if ok.any():
            picked = (
                table[ok]
                .assign(_o=[order.index(str(m)) for m in table["model"][ok]])
                .sort_values(["_o", "cascade"], kind="mergesort")
            )
            names = [_short(str(lab)) for lab in picked["label"]]
            clean, robust = picked["clean_acc"].tolist(), picked["robust_acc"].tolist()
            items.append(
                Rendered(
                    f"tradeoff-{board.slug}.png",
                    f"clean vs robust trade-off, {board.title} (n = {n} points per model)",
                    plots.tradeoff_png(
                        names,
                        clean,
                        robust,
                        pareto_front(clean, robust),
                        f"{board.title}: trade-off at eps={format_eps(board.eps)}",
                        [colours[str(m)] for m in picked["model"]],
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
                f"transfer success rate (%)\n{title}",
            ),
        )
        for k, (title, grid) in enumerate(transfer)
    ]
    figs["examples"] = []
    if examples is not None and len(examples["x"]):
        x, x_adv, captions, labels, models = _example_rows(examples)
        threat = _examples_threat(examples)
        figs["examples"] = [
            Rendered(
                "examples.png",
                "adversarial examples" + (f" at {threat}" if threat else "") + ": clean, adversarial, perturbation",
                plots.examples_png(x, x_adv, captions, labels, [colours.get(m, "black") for m in models]),
                (f"At {threat}: c" if threat else "C")
                + "lean image, adversarial image and the perturbation amplified to the full range (grey: unchanged).",
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


def _training_uses(events: Mapping[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    """Training flag code -> the "model: detail" lines of the cards that record it."""
    uses: dict[str, list[str]] = {}
    for model, found in sorted(events.items()):
        for code, detail in found:
            uses.setdefault(code, []).append(f"{model}: {detail}")
    return dict(sorted(uses.items()))


_ATTACK_NOTE = (
    "Robust accuracy is the per-sample worst case over the cascade's attacks at the selected epsilon "
    "(or the single attack's, for a one-attack cell). The per-attack columns give the robust accuracy "
    "after each attack of the cascade, in order: each attack runs only on the points still robust, so "
    "the last one equals the worst case. Accuracies in percent of the n test points; 95% CI: the exact "
    "(Clopper-Pearson) interval."
)


def _mcnemar_note(board: Board) -> str:
    if not board.paired:
        return ""
    return (
        "vs next: the paired exact McNemar test of the robust outcomes against the next model in the ranking, on "
        f"the same points (two-sided, {ALPHA:.0%} level, not corrected for the several comparisons): "
        "> #k: significantly more robust than #k; ≈ #k: not significantly different (n.s.), their order may "
        "be chance."
    )


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    lines = [
        "| " + " | ".join(_md_escape(h) for h in headers) + " |",
        "|" + "|".join("---:" if num else "---" for num in numeric) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _flags_sections(flag_uses: Mapping[str, list[str]], training: Mapping[str, list[str]]) -> list[tuple]:
    """(title, code, explanation, uses) of every evaluation flag, then every training event."""
    items = [("evaluation", c, EXPLANATIONS.get(c, "no explanation recorded"), u) for c, u in flag_uses.items()]
    items += [("training", c, TRAINING_EXPLANATIONS.get(c, c), u) for c, u in training.items()]
    return items


def render_markdown(
    title: str,
    meta: list[str],
    boards: list[Board],
    figs: dict[str, list[Rendered]],
    transfer: list[tuple[str, pd.DataFrame]],
    flag_uses: dict[str, list[str]],
    image_dir: str = IMAGES_DIR,
    *,
    training: Mapping[str, list[str]] | None = None,
    colours: Mapping[str, str] | None = None,
) -> str:
    lines = [f"# {title}", ""] + [f"- {m}" for m in meta] + [""]
    if colours:
        lines += ["Model colours (the same in every figure): " + ", ".join(f"{m} {c}" for m, c in colours.items()), ""]
    if not boards:
        lines += ["No results in this run.", ""]
    for board in boards:
        cols = _columns(board)
        lines += [f"## {board.title}", ""]
        if board.note:
            lines += [board.note, ""]
        lines += [f"Ranked by robust accuracy at {board.norm} eps = {format_eps(board.eps)}; n = {board.n_text()}.", ""]
        rows = [[_cell(k, row, board.attacks) for k, _ in cols] for row in board.entries.to_dict("records")]
        lines += _md_table([h for _, h in cols], rows, [k in _NUMERIC or k in board.attacks for k, _ in cols])
        lines += ["", _ATTACK_NOTE, ""]
        if board.paired:
            lines += [_mcnemar_note(board), ""]
        lines += [f"![{f.alt}]({image_dir}/{f.name})" for f in figs.get(board.slug, [])] + [""]
        eps_tables = _eps_tables(board)
        if eps_tables:  # a section of its own: the ranked table stays the only table of the board's section
            lines += [f"## {board.title}: every epsilon", ""]
        for caption, headers, eps_rows in eps_tables:
            lines += [f"{caption[0].upper()}{caption[1:]}:", ""]
            lines += _md_table(headers, eps_rows, [h not in ("model", "cascade") for h in headers]) + [""]
    if transfer:
        lines += [
            "## Transfer matrix",
            "",
            "Success rate (%) of adversarial examples crafted on the source model "
            "(rows) against the target model (columns), over the points the target classifies correctly; "
            "the diagonal is white-box.",
            "",
        ]
        for (sub, grid), fig in zip(transfer, figs["transfer"]):
            targets = [str(c) for c in grid.columns]
            lines += [f"### {sub}", ""]
            rows = [[str(src)] + [_pct(v) for v in values] for src, values in grid.iterrows()]
            lines += _md_table(["source \\ target", *targets], rows, [False] + [True] * len(targets))
            lines += ["", f"![{fig.alt}]({image_dir}/{fig.name})", ""]
    if figs.get("examples"):
        fig = figs["examples"][0]
        lines += [
            "## Adversarial examples",
            "",
            fig.note,
            "",
            f"![{fig.alt}]({image_dir}/{fig.name})",
            "",
        ]
    lines += ["## Validity flags", ""]
    items = _flags_sections(flag_uses, training or {})
    if items:
        for source, code, explanation, uses in items:
            what = "Raised for" if source == "evaluation" else "Recorded in the model card of"
            lines += [f"- **{code}** ({source}): {explanation}. {what}: {_md_escape('; '.join(uses))}."]
    else:
        lines.append("No validity flags were raised. No model card records a training event.")
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1400px;
padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
ul.meta{color:#555;font-size:.9rem;padding-left:1.2rem}
nav a{margin-right:1rem}
table{border-collapse:collapse;font-size:.88rem;margin:.6rem 0}
th,td{border:1px solid #d5d5d5;padding:.25rem .55rem;text-align:left;white-space:nowrap}
th{background:#f3f3f3;white-space:normal;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.first td{background:#eef7ee}
abbr{color:#b35c00;text-decoration:underline dotted;cursor:help}
.note{color:#555;font-size:.85rem;max-width:60rem}
.figs{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;flex:0 1 48%;min-width:320px}figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.8rem;color:#666}
dt{font-weight:600;margin-top:.6rem}dd{margin-left:1.2rem}
.scroll{overflow-x:auto}
.sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-.05em}
ul.colours{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;font-size:.88rem}
h3{font-size:1rem;margin:1.2rem 0 .2rem}
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


def _swatch(model: str, colours: Mapping[str, str]) -> str:
    """A colour square of ``model`` (its report colour, also in ``data-colour`` for tests and tools)."""
    colour = colours.get(model)
    if not colour:
        return ""
    return f'<span class="sw" style="background:{colour}" data-model="{_h(model)}" data-colour="{colour}"></span>'


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """A table of already escaped HTML cells."""
    head = "".join(f"<th>{_h(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in zip(row, numeric))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    title: str,
    meta: list[str],
    boards: list[Board],
    figs: dict[str, list[Rendered]],
    transfer: list[tuple[str, pd.DataFrame]],
    flag_uses: dict[str, list[str]],
    *,
    training: Mapping[str, list[str]] | None = None,
    colours: Mapping[str, str] | None = None,
) -> str:
    colours = colours or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        '<ul class="meta">' + "".join(f"<li>{_h(m)}</li>" for m in meta) + "</ul>",
    ]
    if colours:
        parts.append(
            '<ul class="colours" id="colours" title="one colour per model in every figure">'
            + "".join(f"<li>{_swatch(m, colours)}{_h(m)}</li>" for m in colours)
            + "</ul>"
        )
    nav = [(b.slug, b.title) for b in boards]
    nav += [("transfer", "Transfer matrix")] if transfer else []
    nav += [("examples", "Adversarial examples")] if figs.get("examples") else []
    nav += [("flags", "Validity flags")]
    parts.append("<nav>" + "".join(f'<a href="#{_h(s)}">{_h(t)}</a>' for s, t in nav) + "</nav>")
    if not boards:
        parts.append("<p>No results in this run.</p>")
    explanations = {**EXPLANATIONS, **TRAINING_EXPLANATIONS}
    for board in boards:
        cols = _columns(board)
        head = "".join(f"<th>{_h(h)}</th>" for _, h in cols)
        body = []
        for row in board.entries.to_dict("records"):
            cells = []
            for key, _ in cols:
                text = _cell(key, row, board.attacks)
                if key == "flags" and text:
                    text_html = " ".join(
                        f'<abbr title="{_h(explanations.get(c, c))}">{_h(c)}</abbr>' for c in text.split(";")
                    )
                elif key == "model":
                    text_html = _swatch(str(row["model"]), colours) + _h(text)
                else:
                    text_html = _h(text)
                numeric = key in _NUMERIC or key in board.attacks
                cells.append(f'<td class="num">{text_html}</td>' if numeric else f"<td>{text_html}</td>")
            cls = ' class="first"' if row["rank"] == 1 else ""
            body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
        parts += [f'<section id="{_h(board.slug)}"><h2>{_h(board.title)}</h2>']
        if board.note:
            parts.append(f"<p>{_h(board.note)}</p>")
        parts += [
            f"<p>Ranked by robust accuracy at {_h(board.norm)} eps = {_h(format_eps(board.eps))}; "
            f"n = {_h(board.n_text())}.</p>",
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>',
            f'<p class="note">{_h(_ATTACK_NOTE)}</p>',
        ]
        if board.paired:
            parts.append(f'<p class="note">{_h(_mcnemar_note(board))}</p>')
        for caption, headers, eps_rows in _eps_tables(board):
            escaped = [
                [(_swatch(r[0], colours) + _h(r[0])) if k == 0 else _h(c) for k, c in enumerate(r)] for r in eps_rows
            ]
            parts += [
                f"<h3>{_h(caption[0].upper() + caption[1:])}</h3>",
                _html_table(headers, escaped, [h not in ("model", "cascade") for h in headers]),
            ]
        parts += [_html_figs(figs.get(board.slug, [])), "</section>"]
    if transfer:
        parts += [
            '<section id="transfer"><h2>Transfer matrix</h2>',
            '<p class="note">Success rate (%) of adversarial examples crafted on the source model (rows) against '
            "the target model (columns), over the points the target classifies correctly; the diagonal is "
            "white-box.</p>",
            _html_figs(figs["transfer"]),
            "</section>",
        ]
    if figs.get("examples"):
        parts += [
            '<section id="examples"><h2>Adversarial examples</h2>',
            f'<p class="note">{_h(figs["examples"][0].note)}</p>',
            _html_figs(figs["examples"]),
            "</section>",
        ]
    parts.append('<section id="flags"><h2>Validity flags</h2>')
    items = _flags_sections(flag_uses, training or {})
    if items:
        parts.append(
            "<dl>"
            + "".join(
                f"<dt>{_h(code)} <small>({_h(source)})</small></dt><dd>{_h(explanation)}.<br>"
                f"<small>{'Raised for' if source == 'evaluation' else 'Recorded in the model card of'}: "
                f"{_h('; '.join(uses))}.</small></dd>"
                for source, code, explanation, uses in items
            )
            + "</dl>"
        )
    else:
        parts.append("<p>No validity flags were raised. No model card records a training event.</p>")
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


def check_ranking_eps(summary: pd.DataFrame, eps: Mapping[str, float] | None) -> None:
    """Refuse a ranking epsilon that the run never evaluated for that norm (the boards would rank on empty
    columns), naming the epsilons it did evaluate."""
    for norm, value in (eps or {}).items():
        rows = summary[summary["norm"].astype(str) == str(norm)] if len(summary) else summary
        evaluated = sorted({float(e) for e in rows["eps"].dropna()}) if len(rows) else []
        if not evaluated:
            raise RbcError(f"--eps {norm}:{format_eps(value)}: the run evaluated no {norm} threat")
        if not any(abs(e - float(value)) < 1e-9 for e in evaluated):
            listed = ", ".join(format_eps(e) for e in evaluated)
            raise RbcError(
                f"--eps {norm}:{format_eps(value)} was not evaluated in this run: {norm} eps evaluated: {listed}"
            )


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

    ``store``: the model store whose cards give training costs, training events and the black-box proxy's
    description (default ``$RBC_HOME``). ``eps``: norm -> epsilon to rank at (default per board: the largest
    epsilon every entry was evaluated at). The run's ``samples.parquet``, when present, gives the McNemar marks.
    The boards of :mod:`~robustbench_cnn.reporting.boards_extra` (certified vs empirical, corruptions, minimal
    norm) come from the run's tables; ``reference``: a RobustBench ``model_info`` folder shown as external rows.
    Returns (Markdown path, HTML path). Raises :class:`RbcError` for a folder that is not a run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RbcError(f"run folder {run_dir} does not exist")
    out = Path(out_dir) if out_dir is not None else run_dir
    summary = load_run_summary(run_dir)
    check_ranking_eps(summary, eps)
    boards = leaderboards(summary, store, eps, read_samples(run_dir))
    transfer = read_transfer(run_dir)
    examples = _examples(run_dir)
    from robustbench_cnn.reporting.plots import model_colours

    extra_models = [str(m) for _, grid in transfer for m in [*grid.index, *grid.columns]]
    extra_models += [str(m) for m in examples["model"]] if examples is not None else []
    colours = model_colours(model_order(boards) + sorted(set(extra_models)))
    figs = _figures(boards, transfer, examples, colours)
    flag_uses = _flag_uses(summary) if len(summary) else {}
    models = list(summary["model"].dropna().astype(str)) if len(summary) else []
    training = _training_uses(training_events(_cards(store), models))
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
        boards_extra.add_markdown(
            render_markdown(title, meta, boards, figs, transfer, flag_uses, training=training, colours=colours), extra
        ),
        md_path,
    )
    atomic_write_text(
        boards_extra.add_html(
            render_html(title, meta, boards, figs, transfer, flag_uses, training=training, colours=colours), extra
        ),
        html_path,
    )
    return md_path, html_path


__all__ = [
    "TRAINING_EXPLANATIONS",
    "Board",
    "leaderboards",
    "model_order",
    "pareto_front",
    "read_transfer",
    "training_events",
    "render_html",
    "render_markdown",
    "worst_case",
    "write_report",
]
