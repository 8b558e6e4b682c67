"""The leaderboard's boards for issue 21's cell kinds, and the external RobustBench reference rows.

Each builder reads one table of a run folder (it runs no model) and returns an :class:`ExtraBoard` (plain rows
and column headers) that :func:`add_markdown` / :func:`add_html` put before the validity flags of the report:

- :func:`certified_board` (``certify.parquet``): per model, sigma and L2 radius, the bracket of the smoothed
  classifier's robust accuracy, certified accuracy (a lower bound, CERTIFY of Cohen et al., ICML 2019) <= robust
  accuracy <= empirical accuracy under SmoothAdv (an upper bound, Salman et al., NeurIPS 2019), with 95%
  Clopper-Pearson intervals and the gap; a radius where more certified points were contradicted than chance
  allows, or where certified exceeds empirical, is flagged ``INCONSISTENT``;
- :func:`corruptions_board` (``corruptions.parquet``): per model, the mean corruption accuracy (ranked) and the
  accuracy per corruption (mean over the evaluated severities);
- :func:`minimal_norm_board` (``minimal_norm.parquet``): per model and epsilon, the minimal-norm curve (one run),
  the growing-ball curve, the reported per-sample worst case and the seconds of each;
- :func:`attribution_shift_board` (``explain_samples.parquet``): per attribution method and model, the median
  Spearman rank correlation and top-k intersection between the clean and the adversarial attribution maps
  (Ghorbani et al. 2019);
- :func:`patch_board` (``patch.parquet``): per model and target (untargeted, or a target class), the success
  rate of a universal adversarial patch (Brown et al. 2017) at each patch area, with 95% Clopper-Pearson intervals;
- :func:`detection_board` (``detection.parquet``): per model, detector and epsilon, the detection-robust accuracy
  under the adaptive attack (the figure to report) beside the non-adaptive attacks' TPR, ROC-AUC and robust
  accuracy, each marked non-adaptive;
- :func:`reference_board`: RobustBench ``model_info`` entries
  (:func:`robustbench_cnn.reporting.robustbench_entries.reference_rows`), every row marked external.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "ExtraBoard",
    "add_html",
    "add_markdown",
    "attribution_shift_board",
    "certified_board",
    "corruptions_board",
    "detection_board",
    "export_robustbench",
    "extra_boards",
    "minimal_norm_board",
    "patch_board",
    "read_run_table",
    "reference_board",
]

#: The status of a bracket whose bounds contradict each other (see :func:`certified_board`).
INCONSISTENT_STATUS = "INCONSISTENT"


@dataclass
class ExtraBoard:
    """One board: ``rows`` (dicts of text) under ``columns`` ((key, header) pairs), ``flagged[i]`` marks row i."""

    slug: str
    title: str
    note: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, str]]
    flagged: list[bool] = field(default_factory=list)


def read_run_table(run_dir: str | os.PathLike, name: str) -> pd.DataFrame | None:
    """The run's table ``name`` (``<name>.parquet``, else concatenated from its finished cells), None if absent."""
    from robustbench_cnn.tables.results import RunStore

    run_dir = Path(run_dir)
    if (run_dir / f"{name}.parquet").exists():
        return pd.read_parquet(run_dir / f"{name}.parquet")
    if (run_dir / "cells").is_dir() and name in RunStore(run_dir).table_names():
        return RunStore(run_dir).table(name)
    return None


def _pct(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.1f}"


def _ci(low: Any, high: Any) -> str:
    return f"[{_pct(low)}, {_pct(high)}]"


def certified_board(table: pd.DataFrame) -> ExtraBoard:
    """The "Certified vs empirical" board of a ``certify`` table: one row per model, sigma and radius."""
    from robustbench_cnn.evaluation.smoothing import INCONSISTENT

    rows, flagged = [], []
    for rec in table.sort_values(["model", "sigma", "radius"]).to_dict("records"):
        codes = [c for c in str(rec.get("flags") or "").split(";") if c]
        bad = INCONSISTENT in codes or rec["certified_acc"] > rec["empirical_acc"]
        rows.append(
            {
                "model": str(rec["model"]),
                "sigma": f"{rec['sigma']:g}",
                "radius": f"{rec['radius']:g}",
                "bracket": f"{_pct(rec['certified_acc'])} <= robust <= {_pct(rec['empirical_acc'])}",
                "certified": f"{_pct(rec['certified_acc'])} {_ci(rec['certified_ci_low'], rec['certified_ci_high'])}",
                "empirical": f"{_pct(rec['empirical_acc'])} {_ci(rec['empirical_ci_low'], rec['empirical_ci_high'])}",
                "gap": _pct(rec["gap"]),
                "inconsistent": f"{int(rec['inconsistent'])} of allowed {int(rec['inconsistent_allowed'])}",
                "status": INCONSISTENT_STATUS if bad else "consistent",
                "n": str(int(rec["n"])),
                "flags": ";".join(codes),
            }
        )
        flagged.append(bad)
    columns = [
        ("model", "model"),
        ("sigma", "sigma"),
        ("radius", "L2 radius"),
        ("bracket", "certified % <= robust <= empirical %"),
        ("certified", "certified % [95% CI]"),
        ("empirical", "empirical % [95% CI]"),
        ("gap", "gap (pp)"),
        ("inconsistent", "certified points contradicted"),
        ("status", "status"),
        ("n", "n"),
        ("flags", "flags"),
    ]
    note = (
        "Randomized smoothing: certified accuracy (CERTIFY, a lower bound that holds with probability 1 - alpha) "
        "and empirical accuracy under SmoothAdv judged by PREDICT (an upper bound) on the same points; the "
        "smoothed classifier's robust accuracy lies between them. INCONSISTENT: more certified points were "
        "classified otherwise within the radius than chance allows, or certified exceeds empirical."
    )
    return ExtraBoard("certified-vs-empirical", "Certified vs empirical", note, columns, rows, flagged)


def corruptions_board(table: pd.DataFrame) -> ExtraBoard:
    """The corruptions board of a ``corruptions`` table: per model the mean accuracy (ranked), then per corruption."""
    cells = table[table["corruption"] != "mean"]
    names = list(dict.fromkeys(cells["corruption"]))
    per = cells.groupby(["model", "corruption"])["accuracy"].mean()
    means = table[table["corruption"] == "mean"].drop_duplicates("model", keep="last").set_index("model")
    order = means["accuracy"].sort_values(ascending=False).index
    rows = []
    for rank, model in enumerate(order, 1):
        rec = means.loc[model]
        row = {
            "rank": str(rank),
            "model": str(model),
            "benchmark": str(rec.get("benchmark", "")),
            "threat": str(rec.get("threat", "")),
            "clean": _pct(rec.get("clean_accuracy")),
            "mean": _pct(rec["accuracy"]),
            "n": str(int(rec["n"])),
        }
        row |= {name: _pct(per.get((model, name))) for name in names}
        rows.append(row)
    columns = [("rank", "rank"), ("model", "model"), ("benchmark", "benchmark"), ("threat", "threat")]
    columns += [("clean", "clean %"), ("mean", "mean corruption %"), ("n", "n")]
    columns += [(name, f"{name} %") for name in names]
    note = (
        "Accuracy under common corruptions (CIFAR-10-C for 3-channel data, MNIST-C for 1-channel data, generated "
        "on the fly and seeded per image); ranked by the mean over the evaluated corruption x severity cells; "
        "per corruption: the mean over its evaluated severities."
    )
    return ExtraBoard("corruptions", "Common corruptions", note, columns, rows, [False] * len(rows))


def minimal_norm_board(table: pd.DataFrame) -> ExtraBoard:
    """The minimal-norm board of a ``minimal_norm`` table: per model and epsilon, both curves and the worst case."""
    rows = []
    for rec in table.sort_values(["model", "norm", "eps"]).to_dict("records"):
        rows.append(
            {
                "model": str(rec["model"]),
                "norm": str(rec["norm"]),
                "eps": f"{rec['eps']:g}",
                "clean": _pct(rec["clean_accuracy"]),
                "minimal": _pct(rec["minimal_norm_robust"]),
                "growing": _pct(rec["growing_ball_robust"]),
                "reported": _pct(rec["reported_robust"]),
                "attacks": f"{rec['minimal_norm_attacks']} vs {rec['growing_ball_attacks']}",
                "seconds": f"{rec['minimal_norm_s']:.1f} vs {rec['growing_ball_s']:.1f}",
            }
        )
    columns = [("model", "model"), ("norm", "norm"), ("eps", "eps"), ("clean", "clean %")]
    columns += [("minimal", "minimal-norm robust %"), ("growing", "growing-ball robust %")]
    columns += [("reported", "worst case %"), ("attacks", "attacks"), ("seconds", "seconds (one run vs per eps)")]
    note = (
        "A minimal-norm attack runs once and gives the whole curve (a point is robust at eps when its smallest "
        "adversarial norm found exceeds eps); the growing ball runs its attacks at every eps. The worst case of "
        "the two per sample is the figure to report."
    )
    return ExtraBoard("minimal-norm", "Minimal-norm vs growing ball", note, columns, rows, [False] * len(rows))


def _two(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.2f}"


def attribution_shift_board(table: pd.DataFrame) -> ExtraBoard:
    """One row per model, attack, threat and method: points attacked and broken, the median Spearman rank
    correlation and the median top-k intersection between the clean and the adversarial maps (over the attacked
    points, and over the broken ones)."""
    from robustbench_cnn.evaluation.explain import METHODS, shift_summary

    summary = shift_summary(table)
    order = {m: i for i, m in enumerate(METHODS)}
    rows = []
    if len(summary):
        summary = summary.assign(_m=summary["method"].map(order)).sort_values(["_m", "model", "attack", "eps"])
    for rec in summary.to_dict("records"):
        policy = rec.get("target_policy") or ""
        rows.append(
            {
                "method": str(rec["method"]),
                "model": str(rec["model"]),
                "attack": str(rec["attack"]) + (f" (targeted {policy})" if policy else ""),
                "threat": f"{rec['norm']}:{rec['eps']:g}",
                "points": f"{rec['attacked']} ({rec['broken']} broken)",
                "spearman": _two(rec["median_spearman"]),
                "top_k": _two(rec["median_top_k"]),
                "spearman_broken": _two(rec["median_spearman_broken"]),
                "top_k_broken": _two(rec["median_top_k_broken"]),
                "k": str(rec["k"]),
            }
        )
    columns = [("method", "method"), ("model", "model"), ("attack", "attack"), ("threat", "threat")]
    columns += [("points", "points attacked"), ("spearman", "median Spearman"), ("top_k", "median top-k ∩")]
    columns += [("spearman_broken", "median Spearman (broken)"), ("top_k_broken", "median top-k ∩ (broken)")]
    columns += [("k", "k")]
    note = (
        "Attribution shift (Ghorbani et al. 2019): per clean-correct point, the Spearman rank correlation and the "
        "top-k intersection (fraction of the k most important pixels kept) between the attribution map of the "
        "clean prediction and that of the adversarial prediction, after the attack's output (successful or not; "
        "'broken': the prediction changed). Higher: the attack moved the explanation less. Medians over points."
    )
    return ExtraBoard("attribution-shift", "Attribution shift under attack", note, columns, rows, [False] * len(rows))


def patch_board(table: pd.DataFrame) -> ExtraBoard:
    """The adversarial-patch board of a ``patch`` table: one row per model and target, success % per patch area;
    the untargeted rows first, ranked by their success at the largest area (most robust model first)."""
    areas = sorted(table["area"].astype(float).unique())
    last = table.drop_duplicates(["model", "target", "area"], keep="last")
    largest = last[last["area"] == areas[-1]].set_index(["model", "target"])["success_rate"]
    keys = sorted(
        last.groupby(["model", "target"]).groups,
        key=lambda k: (int(k[1]) >= 0, int(k[1]), float(largest.get(k, float("nan"))), str(k[0])),
    )
    rows = []
    for model, target in keys:
        group = last[(last["model"] == model) & (last["target"] == target)].set_index("area")
        first = group.iloc[0]
        row = {
            "model": str(model),
            "target": "untargeted" if int(target) < 0 else str(int(target)),
            "clean": _pct(first["clean_acc"]),
            "n": f"{int(first['n'])} x {int(first['placements'])}",
            "train_n": str(int(first["train_n"])),
        }
        for area in areas:
            rec = group.loc[area] if area in group.index else None
            row[f"a{area:g}"] = (
                "" if rec is None else f"{_pct(rec['success_rate'])} {_ci(rec['success_lo'], rec['success_hi'])}"
            )
        rows.append(row)
    columns = [("model", "model"), ("target", "target"), ("clean", "clean %")]
    columns += [(f"a{area:g}", f"success % at patch:{area:g} [95% CI]") for area in areas]
    columns += [("n", "test points x placements"), ("train_n", "training images")]
    note = (
        "Universal adversarial patch (Brown et al. 2017): one square patch per model, size and target, learned on "
        "training images with expectation over transformation (random position, rotation, scale, brightness, "
        "contrast and noise), pasted on the test images at seeded random positions. Success: the prediction leaves "
        "the true class (untargeted) or becomes the target, among the attacked points; lower is more robust."
    )
    return ExtraBoard("patch", "Adversarial patches", note, columns, rows, [False] * len(rows))


def detection_board(table: pd.DataFrame) -> ExtraBoard:
    """The detection board of a ``detection`` table: one row per model, detector and epsilon; the adaptive
    detection-robust accuracy is the figure shown, the non-adaptive attacks' figures are marked as such."""
    rows = []
    keys = ["model", "detector", "norm", "eps"]
    adaptive = table[table["adaptive"].astype(bool)].drop_duplicates(keys, keep="last")
    others = table[~table["adaptive"].astype(bool)]
    for rec in adaptive.sort_values(
        ["model", "norm", "eps", "robust_acc"], ascending=[True, True, True, False]
    ).to_dict("records"):
        mask = (others["model"] == rec["model"]) & (others["detector"] == rec["detector"])
        mask &= (others["norm"] == rec["norm"]) & (others["eps"] == rec["eps"])
        plain = others[mask].drop_duplicates("attack", keep="last").to_dict("records")
        tpr = "; ".join(
            f"{o['attack']} {_pct(o['tpr'])} / {'' if pd.isna(o['auc']) else format(o['auc'], '.3f')}" for o in plain
        )
        lowest = min((o["robust_acc"] for o in plain), default=float("nan"))
        rows.append(
            {
                "model": str(rec["model"]),
                "detector": str(rec["detector"]),
                "threat": f"{rec['norm']} {rec['eps']:g}",
                "clean": _pct(rec["clean_acc"]),
                "fpr": f"{_pct(rec['clean_fpr'])} (target {_pct(rec['fpr_target'])})",
                "tpr": tpr,
                "plain": "; ".join(f"{o['attack']} {_pct(o['robust_acc'])}" for o in plain),
                "adaptive": f"{_pct(rec['robust_acc'])} {_ci(rec['robust_ci_low'], rec['robust_ci_high'])}",
                "drop": "" if pd.isna(lowest) else f"{100 * (lowest - rec['robust_acc']):.1f}",
                "n": str(int(rec["n"])),
            }
        )
    columns = [("model", "model"), ("detector", "detector"), ("threat", "threat"), ("clean", "clean %")]
    columns += [("fpr", "clean flagged (FPR) %"), ("tpr", "non-adaptive TPR % / ROC-AUC")]
    columns += [("plain", "non-adaptive robust %"), ("adaptive", "adaptive robust % [95% CI]")]
    columns += [("drop", "adaptive drop (pp)"), ("n", "n")]
    note = (
        "Detectors guarding a classifier, which abstains on flagged inputs; thresholds calibrated on clean held-out "
        "points to the target false positive rate. A point counts as robust iff it is classified correctly and not "
        "flagged when clean (a flagged clean point is an error), and the attack's point is flagged (abstain) or "
        "classified correctly. The adaptive figure (Carlini & Wagner 2017; Tramer et al. 2020: a joint attack on "
        "classifier and detector, BPDA through squeezers, per-sample worst case with the non-adaptive attacks) is "
        "the one to report; the non-adaptive figures (attacks on the classifier alone) are shown only to measure "
        "how much adaptivity takes away."
    )
    return ExtraBoard("detection", "Detection defenses (adaptive)", note, columns, rows, [False] * len(rows))


def reference_board(references: pd.DataFrame) -> ExtraBoard:
    """External reference rows (``reference_rows``): shown apart, each marked external, never ranked with ours."""
    rows = []
    for rec in references.sort_values(["dataset", "threat_model", "robust_acc"], ascending=[True, True, False]).to_dict(
        "records"
    ):
        eps = rec.get("eps")
        rows.append(
            {
                "model": str(rec["model"]),
                "dataset": str(rec["dataset"]),
                "threat": str(rec["threat_model"]) + ("" if eps is None or pd.isna(eps) else f" {eps:g}"),
                "clean": _pct(rec.get("clean_acc")),
                "robust": _pct(rec.get("robust_acc")),
                "architecture": str(rec.get("architecture") or ""),
                "source": str(rec.get("source") or ""),
                "external": "external" if rec.get("external", True) else "",
            }
        )
    columns = [("model", "model"), ("dataset", "dataset"), ("threat", "threat model"), ("clean", "clean %")]
    columns += [("robust", "robust %"), ("architecture", "architecture"), ("source", "source")]
    columns += [("external", "external")]
    note = "External reference rows (RobustBench model_info entries): reported by others, not evaluated in this run."
    return ExtraBoard("external-references", "External references", note, columns, rows, [False] * len(rows))


def extra_boards(run_dir: str | os.PathLike, reference: str | os.PathLike | None = None) -> list[ExtraBoard]:
    """Every extra board the run folder's tables (and the ``reference`` model_info folder, if given) allow."""
    boards = []
    for name, build in (
        ("certify", certified_board),
        ("corruptions", corruptions_board),
        ("minimal_norm", minimal_norm_board),
        ("explain_samples", attribution_shift_board),
        ("patch", patch_board),
        ("detection", detection_board),
    ):
        table = read_run_table(run_dir, name)
        if table is not None and len(table):
            boards.append(build(table))
    if reference is not None:
        from robustbench_cnn.reporting.robustbench_entries import read_model_info, reference_rows

        references = reference_rows(read_model_info(reference))
        if len(references):
            boards.append(reference_board(references))
    return boards


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def add_markdown(markdown: str, boards: list[ExtraBoard]) -> str:
    """``markdown`` with the boards inserted before its ``## Validity flags`` section (else appended)."""
    if not boards:
        return markdown
    lines: list[str] = []
    for board in boards:
        lines += [f"## {board.title}", "", board.note, ""]
        lines.append("| " + " | ".join(_md_escape(h) for _, h in board.columns) + " |")
        lines.append("|" + "---|" * len(board.columns))
        for row, bad in zip(board.rows, board.flagged or [False] * len(board.rows)):
            cells = [_md_escape(row.get(k, "")) for k, _ in board.columns]
            lines.append("| " + " | ".join(f"**{c}**" if bad and c else c for c in cells) + " |")
        lines.append("")
    block = "\n".join(lines) + "\n"
    marker = "## Validity flags"
    return markdown.replace(marker, block + marker, 1) if marker in markdown else markdown + "\n" + block


def add_html(page: str, boards: list[ExtraBoard]) -> str:
    """``page`` with the boards as sections before its validity-flags section (else before ``</body>``); a
    flagged row has the class ``inconsistent``."""
    if not boards:
        return page
    parts = []
    for board in boards:
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in board.columns)
        body = []
        for row, bad in zip(board.rows, board.flagged or [False] * len(board.rows)):
            cells = "".join(f"<td>{html.escape(row.get(k, ''))}</td>" for k, _ in board.columns)
            style = ' class="inconsistent" style="background:#fde2e2"' if bad else ""
            body.append(f"<tr{style}>{cells}</tr>")
        parts.append(
            f'<section id="{html.escape(board.slug)}"><h2>{html.escape(board.title)}</h2>'
            f'<p class="note">{html.escape(board.note)}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></section>"
        )
    block = "\n".join(parts) + "\n"
    marker = '<section id="flags">'
    if marker in page:
        return page.replace(marker, block + marker, 1)
    return page.replace("</body>", block + "</body>", 1)


def export_robustbench(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike, store: str | os.PathLike | None = None
) -> list[Path]:
    """Write the run's RobustBench ``model_info`` entries under ``out_dir``: one per model, dataset and linf/l2
    epsilon of its summary (the cascade's worst case) and one per model whose corruptions table holds the
    benchmark's mean; the cards of ``store`` give the architectures. Returns the written paths."""
    from robustbench_cnn.reporting.robustbench_entries import (
        export_corruption_entries,
        export_entries,
        write_model_info,
    )
    from robustbench_cnn.store import list_checkpoints

    infos = []
    summary = read_run_table(run_dir, "summary")
    try:
        cards = {card.name: card for card in list_checkpoints(store)}
    except OSError:  # no readable store: the entries go without architectures
        cards = {}
    if summary is not None and len(summary):
        from robustbench_cnn.tables.results import with_cascade

        infos += export_entries(with_cascade(summary), cards)
    corruptions = read_run_table(run_dir, "corruptions")
    if corruptions is not None and len(corruptions):
        infos += export_corruption_entries(corruptions, cards)
    return write_model_info(infos, out_dir)
