"""RobustBench ``model_info`` entries: export our evaluated models in their format, import theirs as references.

RobustBench (Croce et al., NeurIPS 2021 Datasets and Benchmarks, https://arxiv.org/abs/2010.09670) keeps one JSON
file per model at ``model_info/<dataset>/<threat model>/<model id>.json`` (threat model ``Linf``, ``L2`` or
``corruptions``), with these fields (from the files of its repository and its leaderboard template,
``robustbench/leaderboard/template.py``): ``link``, ``name`` (the paper's title), ``authors``,
``additional_data`` (bool), ``number_forward_passes`` (int), ``dataset``, ``venue``, ``architecture``, ``eps``
(text such as ``"8/255"``; null for corruptions), ``clean_acc``, ``reported`` (the paper's figure),
``autoattack_acc`` (``corruptions_acc`` for corruptions) as percent text with two decimals, and optionally
``external`` (a lower robust accuracy from an external evaluation, percent text), ``footnote`` (HTML) and
``unreliable`` (bool).

- :func:`export_entries` turns a run's summary table (one entry per model, dataset, norm and epsilon: the
  per-sample worst case, i.e. the lowest cumulative robust accuracy of the cascade) and the models' cards into
  entries; :func:`export_corruption_entries` does the same from corruption-evaluation records (the benchmark's
  mean corruption accuracy). :func:`write_model_info` writes them in RobustBench's folder layout.
- :func:`read_model_info` reads such a tree (theirs or ours) and :func:`reference_rows` turns it into a DataFrame
  of *external reference rows*: ``external`` is True and ``source`` names where they came from, so they are
  never ranked with our own evaluations without saying so. RobustBench's own ``external`` figure (an outside
  evaluation's robust accuracy) becomes ``external_eval_acc``, keeping the names apart.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.types import Norm, format_eps, parse_eps
from robustbench_cnn.store import ModelCard

__all__ = [
    "MODEL_INFO_FIELDS",
    "ModelInfo",
    "UNRELIABLE_FLAGS",
    "export_corruption_entries",
    "export_entries",
    "read_model_info",
    "reference_rows",
    "write_model_info",
]

#: RobustBench's model_info fields, in the order of its files (``corruptions_acc`` replaces ``autoattack_acc``
#: for the corruptions threat model).
MODEL_INFO_FIELDS = (
    "link",
    "name",
    "authors",
    "additional_data",
    "number_forward_passes",
    "dataset",
    "venue",
    "architecture",
    "eps",
    "clean_acc",
    "reported",
    "autoattack_acc",
    "external",
    "footnote",
    "unreliable",
)
#: Fields an entry must have (the others are optional in RobustBench's files).
REQUIRED_FIELDS = ("name", "dataset", "eps", "clean_acc")
#: RobustBench's threat-model folders for our norms.
THREAT_FOLDERS = {Norm.LINF: "Linf", Norm.L2: "L2"}
CORRUPTIONS_FOLDER = "corruptions"
#: Our validity flags (``evaluation.flags``) that make an exported evaluation ``unreliable``: signs of gradient
#: masking or of a broken evaluation (``eot``, ``attacks-skipped`` and ``train-mode`` only inform).
UNRELIABLE_FLAGS = frozenset(
    {
        "randomized",
        "probabilities",
        "zero-gradients",
        "eps0-mismatch",
        "non-monotone",
        "above-chance",
        "single-step-beats-iterative",
        "black-box-beats-white-box",
    }
)
#: Suites whose cascade contains AutoAttack's standard attacks (so ``autoattack_acc`` is at most AutoAttack's).
AUTOATTACK_SUITES = frozenset({"standard", "plus", "autoattack"})


@dataclass(frozen=True)
class ModelInfo:
    """One RobustBench entry and where it lives: ``<dataset>/<threat_model>/<key>.json``."""

    dataset: str
    threat_model: str
    key: str
    entry: dict[str, Any]

    def path(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.dataset / self.threat_model / f"{self.key}.json"


def _pct(value: float) -> str:
    """A fraction as RobustBench's percent text: ``0.97333`` -> ``"97.33"``."""
    return f"{100 * float(value):.2f}"


def _key(model: str) -> str:
    """A file-system safe model id from our model name (``mnist/fastcnn-pgd-at`` -> ``mnist_fastcnn-pgd-at``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_") or "model"


def _base_entry(model: str, dataset: str, card: ModelCard | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    recipe = card.recipe if card is not None else ""
    arch = card.arch if card is not None else ""
    what = f"{arch} ({recipe})" if arch and recipe else (arch or model)
    entry: dict[str, Any] = {
        "link": "",
        "name": f"robustbench-cnn {model}: {what}",
        "authors": "",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": dataset,
        "venue": "N/A",
        "architecture": arch,
    }
    entry.update({k: v for k, v in overrides.items() if k in MODEL_INFO_FIELDS or k == "corruptions_acc"})
    return entry


def export_entries(
    summary: pd.DataFrame,
    cards: Mapping[str, ModelCard] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ModelInfo]:
    """RobustBench entries for every (model, dataset, norm, eps) of a run's summary table.

    Args:
        summary: rows of ``Evaluation.summary_rows`` (columns ``model``, ``dataset``, ``norm``, ``eps``,
            ``clean_acc``, ``robust_acc``, ``suite``, ``n``, ``seed``, optionally ``flags``, ``arch``).
        cards: model cards by model name (architecture, recipe; optional).
        overrides: per model name, RobustBench fields to set (``link``, ``name``, ``authors``, ``venue``,
            ``reported``, ``additional_data``, ...).

    Norms other than linf and l2 (RobustBench has no leaderboard for them) and ``eps == 0`` are left out. The
    robust figure is the lowest robust accuracy of the cell's rows (the cascade's per-sample worst case, the
    rows being cumulative); ``footnote`` names the suite, n and seed, says when the suite is not AutoAttack,
    and lists the flags; ``unreliable`` is set when a flag of :data:`UNRELIABLE_FLAGS` was raised.
    """
    missing = {"model", "dataset", "norm", "eps", "clean_acc", "robust_acc"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary table lacks column(s) {', '.join(sorted(missing))}")
    cards, overrides = cards or {}, overrides or {}
    out = []
    for (model, dataset, norm_text, eps), rows in summary.groupby(["model", "dataset", "norm", "eps"], sort=True):
        norm = Norm.parse(str(norm_text))
        if norm not in THREAT_FOLDERS or float(eps) <= 0:
            continue
        card = cards.get(str(model))
        entry = _base_entry(str(model), str(dataset), card, overrides.get(str(model), {}))
        if not entry["architecture"] and "arch" in rows and rows["arch"].notna().any():
            entry["architecture"] = str(rows["arch"].dropna().iloc[0])
        suites = sorted({str(s) for s in rows.get("cascade", rows.get("suite", pd.Series(dtype=str))).dropna()})
        flags = sorted(
            {f for text in rows.get("flags", pd.Series(dtype=str)).dropna() for f in str(text).split(";") if f}
        )
        n = int(rows["n"].iloc[0]) if "n" in rows else "n/a"
        seed = int(rows["seed"].iloc[0]) if "seed" in rows else "n/a"
        notes = [f"robustbench-cnn evaluation: suite {', '.join(suites) or 'n/a'}, n={n}, seed={seed}"]
        if not AUTOATTACK_SUITES & set(suites):
            notes.append("the robust accuracy is not from AutoAttack (a weaker suite: an upper bound)")
        if flags:
            notes.append("flags: " + ", ".join(flags))
        entry.update(
            {
                "eps": format_eps(float(eps)),
                "clean_acc": _pct(rows["clean_acc"].iloc[0]),
                "reported": entry.get("reported", ""),
                "autoattack_acc": _pct(rows["robust_acc"].min()),
                "footnote": "<br>".join(notes),
                "unreliable": bool(UNRELIABLE_FLAGS & set(flags)),
            }
        )
        key = f"{_key(str(model))}_{norm.value}_{format_eps(float(eps)).replace('/', '-')}"
        out.append(ModelInfo(str(dataset), THREAT_FOLDERS[norm], key, _ordered(entry)))
    return out


def export_corruption_entries(
    records: pd.DataFrame | Iterable[Mapping[str, Any]],
    cards: Mapping[str, ModelCard] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    dataset: str | None = None,
) -> list[ModelInfo]:
    """RobustBench corruptions entries (``corruptions_acc``, ``eps`` null) from ``CorruptionEvaluation.records``
    rows with a ``model`` column: one per model whose ``mean`` row is the benchmark's mean (``benchmark_mean``)."""
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if "model" not in frame:
        raise ValueError("corruption records lack the 'model' column (pass meta={'model': ...} to records())")
    if "benchmark_mean" in frame:
        full = frame["benchmark_mean"].astype("boolean").fillna(False).astype(bool)
    else:
        full = pd.Series(False, index=frame.index)
    means = frame[(frame["corruption"] == "mean") & full]
    cards, overrides = cards or {}, overrides or {}
    out = []
    for _, row in means.iterrows():
        model = str(row["model"])
        card = cards.get(model)
        data = dataset or (card.dataset if card is not None else str(row.get("dataset", row["benchmark"])))
        entry = _base_entry(model, data, card, overrides.get(model, {}))
        entry.update(
            {
                "eps": None,
                "clean_acc": _pct(row["clean_accuracy"]),
                "reported": entry.get("reported", ""),
                "corruptions_acc": _pct(row["accuracy"]),
                "footnote": f"robustbench-cnn {row['benchmark']} (generated locally), n={int(row['n'])}, "
                f"seed={int(row['seed'])}",
            }
        )
        out.append(ModelInfo(data, CORRUPTIONS_FOLDER, f"{_key(model)}_{row['benchmark']}", _ordered(entry)))
    return out


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    order = list(MODEL_INFO_FIELDS) + ["corruptions_acc"]
    if "corruptions_acc" in entry:  # RobustBench's corruption files put it where autoattack_acc goes
        order.insert(order.index("autoattack_acc"), order.pop())
    return {k: entry[k] for k in order if k in entry} | {k: v for k, v in entry.items() if k not in order}


def write_model_info(infos: Iterable[ModelInfo], root: str | os.PathLike) -> list[Path]:
    """Write each entry to ``root/<dataset>/<threat model>/<key>.json`` (RobustBench's layout); the paths."""
    paths = []
    for info in infos:
        path = info.path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info.entry, indent=2) + "\n")
        paths.append(path)
    return paths


def read_model_info(root: str | os.PathLike) -> list[ModelInfo]:
    """Every ``<dataset>/<threat model>/<id>.json`` under ``root`` (a RobustBench ``model_info`` folder).

    A file that is not a JSON object with :data:`REQUIRED_FIELDS` raises :class:`RbcError` naming it.
    """
    base = Path(root)
    if not base.is_dir():
        raise RbcError(f"model_info folder {base} does not exist")
    infos = []
    for path in sorted(base.glob("*/*/*.json")):
        try:
            entry = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RbcError(f"{path}: not a JSON model_info entry ({exc.__class__.__name__})") from None
        if not isinstance(entry, dict) or any(k not in entry for k in REQUIRED_FIELDS):
            raise RbcError(f"{path}: a model_info entry needs the fields {', '.join(REQUIRED_FIELDS)}")
        infos.append(ModelInfo(path.parent.parent.name, path.parent.name, path.stem, entry))
    return infos


def _fraction(text: Any) -> float:
    """RobustBench percent text (``"43.21"``, ``""``, None) as a fraction (NaN when absent)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return math.nan
    try:
        return float(text) / 100.0
    except (TypeError, ValueError):
        return math.nan


def reference_rows(infos: Iterable[ModelInfo], source: str = "robustbench") -> pd.DataFrame:
    """External reference rows from model_info entries: one row per entry, fractions in [0, 1] like our
    tables, ``external`` True and ``source`` set; ``norm``/``eps`` parsed from the folder and ``eps`` text
    (NaN for corruptions), ``robust_acc`` from ``autoattack_acc`` (``corruptions_acc`` for corruptions)."""
    rows = []
    for info in infos:
        entry = info.entry
        norm = next((n.value for n, folder in THREAT_FOLDERS.items() if folder == info.threat_model), None)
        eps = entry.get("eps")
        rows.append(
            {
                "model": info.key,
                "name": entry.get("name", ""),
                "dataset": info.dataset,
                "threat_model": info.threat_model,
                "norm": norm,
                "eps": parse_eps(str(eps)) if eps not in (None, "") else math.nan,
                "clean_acc": _fraction(entry.get("clean_acc")),
                "robust_acc": _fraction(
                    entry.get("corruptions_acc" if info.threat_model == CORRUPTIONS_FOLDER else "autoattack_acc")
                ),
                "reported_acc": _fraction(entry.get("reported")),
                "external_eval_acc": _fraction(entry.get("external")),
                "architecture": entry.get("architecture", ""),
                "additional_data": bool(entry.get("additional_data", False)),
                "number_forward_passes": entry.get("number_forward_passes"),
                "venue": entry.get("venue", ""),
                "link": entry.get("link", ""),
                "footnote": entry.get("footnote", ""),
                "unreliable": bool(entry.get("unreliable", False)),
                "source": source,
                "external": True,
            }
        )
    return pd.DataFrame(rows)
