"""Synthetic results for the report and regression tests: summary rows, run folders, examples, transfer.

Rows go through the real schema (``results.typed_frame``) and the real run-folder writer (``RunStore``),
so the tests read exactly what an evaluation writes, without running one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_cnn.tables.results import SCHEMA_VERSION, SUMMARY_SCHEMA, RunStore, typed_frame


def cell_rows(
    model: str,
    clean: float,
    curve: dict[float, float],
    *,
    attacks: Iterable[str] = ("pgd", "fgsm"),
    norm: str = "linf",
    dataset: str = "digits",
    cascade: str = "quick",
    defense: str = "",
    flags: str = "",
    targeted: bool = False,
    target_policy: str = "",
    n: int = 100,
    run_id: str = "run-test",
) -> list[dict[str, Any]]:
    """Summary rows of one cell as an evaluation writes them: per eps one row per attack (cumulative robust
    accuracy along the cascade, the last equal to ``curve[eps]``) and a ``worst-case`` row when the cell has
    several attacks."""
    from robustbench_cnn.tables.rows import accuracy_cis

    attacks = list(attacks)
    cid = f"{model}-{cascade}-{norm}".replace("/", "_")
    rows = []
    for eps, worst in sorted(curve.items()):
        base = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "cell_id": cid,
            "model": model,
            "checkpoint_sha256": "0" * 64,
            "arch": model.split("/")[-1].split("-")[0],
            "dataset": dataset,
            "split": "test",
            "n": n,
            "defense": defense,
            "cascade": cascade,
            "targeted": targeted,
            "target_policy": target_policy if targeted else "",
            "norm": norm,
            "eps": float(eps),
            "clean_acc": clean,
            "seed": 0,
            "device": "cpu",
            "elapsed_s": 0.1,
            "flags": flags,
            "versions": json.dumps({"torch": "x"}),
            "git_sha": "abc",
            "timestamp": "2025-01-01T00:00:00+00:00",
        }
        for k, attack in enumerate(attacks):
            robust = min(clean, worst + 0.02 * (len(attacks) - 1 - k)) if eps > 0 else clean
            rows.append(
                {
                    **base,
                    "attack": attack,
                    "attack_kind": "white-box",
                    "attack_params": "{}",
                    "robust_acc": robust,
                    "success_rate": 1 - robust / clean if clean else 0.0,
                }
            )
        if len(attacks) > 1:
            rows.append(
                {
                    **base,
                    "attack": "worst-case",
                    "attack_kind": "cascade",
                    "attack_params": json.dumps(attacks),
                    "robust_acc": worst if eps > 0 else clean,
                    "success_rate": 1 - worst / clean if clean else 0.0,
                }
            )
    return [{**row, **accuracy_cis(row)} for row in rows]  # the intervals, as the row builder adds them


def _schema(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The summary schema plus the extra columns (transfer rows: ``source``, ``attacked``) the rows use."""
    from robustbench_cnn.tables.results import EXTRA_SUMMARY_COLUMNS

    return {**SUMMARY_SCHEMA, **{c: t for c, t in EXTRA_SUMMARY_COLUMNS.items() if any(c in r for r in rows)}}


def summary(*cells: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [row for cell in cells for row in cell]
    return typed_frame(rows, _schema(rows))


def paired_cell(
    model: str,
    clean_correct: np.ndarray,
    robust: dict[float, np.ndarray],
    *,
    attack: str = "pgd",
    cell_id: str | None = None,
    norm: str = "linf",
    dataset: str = "digits",
    sample_ids: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A one-attack white-box cell built from per-sample outcomes: (summary rows, sample rows), consistent as an
    evaluation writes them (robust accuracy = mean of ``robust[eps]``, clean accuracy = mean of ``clean_correct``;
    the row builder adds the intervals). ``robust[eps]`` must be False where ``clean_correct`` is."""
    from robustbench_cnn.tables.rows import accuracy_cis

    clean_correct = np.asarray(clean_correct, bool)
    n = len(clean_correct)
    ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids)
    cid = cell_id or f"{model}-{attack}-{norm}".replace("/", "_")
    rows, samples = [], []
    for eps, outcome in sorted(robust.items()):
        outcome = np.asarray(outcome, bool)
        assert not (outcome & ~clean_correct).any(), "a misclassified point cannot be robust"
        row = cell_rows(model, float(clean_correct.mean()), {eps: float(outcome.mean())}, attacks=[attack], n=n)[0]
        row.update(cell_id=cid, cascade=attack, dataset=dataset, norm=norm, clean_acc=float(clean_correct.mean()))
        row["robust_acc"] = float(outcome.mean()) if eps > 0 else float(clean_correct.mean())
        rows.append({**row, **accuracy_cis(row)})
        for i in range(n):
            broken = bool(clean_correct[i] and not outcome[i])
            samples.append(
                {
                    "run_id": row["run_id"],
                    "cell_id": cid,
                    "model": model,
                    "dataset": dataset,
                    "attack": attack if broken else "",
                    "norm": norm,
                    "eps": float(eps),
                    "sample_id": int(ids[i]),
                    "label": int(ids[i]) % 10,
                    "clean_correct": bool(clean_correct[i]),
                    "success": broken,
                    "robust": bool(outcome[i]),
                    "target": -1,
                }
            )
    return rows, samples


def write_run(run_dir: Path, *cells: list[dict[str, Any]], samples: list[list[dict[str, Any]]] | None = None) -> Path:
    """A run folder (cells/, summary.parquet, samples.parquet, run.json) holding ``cells`` (and, with ``samples``,
    one per-sample list per cell)."""
    from robustbench_cnn.tables.results import SAMPLES_SCHEMA

    store = RunStore(run_dir)
    for k, cell in enumerate(cells):
        sample_rows = typed_frame(samples[k], SAMPLES_SCHEMA) if samples else None
        store.write_cell(f"cell{k}", typed_frame(cell, _schema(cell)), sample_rows)
    store.write_run_json({"argv": ["test"], "cells": len(cells)})
    store.finalize()
    return run_dir


def three_models() -> list[list[dict[str, Any]]]:
    """Three linf models with a known order at eps 0.3: b (robust 0.6) > a (0.4, clean 0.99) > c (0.4, clean
    0.95), plus one l2 cell so the run has two boards."""
    return [
        cell_rows("digits/a-standard", 0.99, {0: 0.99, 0.1: 0.5, 0.3: 0.4}),
        cell_rows("digits/b-pgd-at", 0.90, {0: 0.90, 0.1: 0.7, 0.3: 0.6}, defense="pgd-at"),
        cell_rows("digits/c-standard", 0.95, {0: 0.95, 0.1: 0.6, 0.3: 0.4}, flags="single-step-beats-iterative"),
        cell_rows("digits/a-standard", 0.99, {0: 0.99, 0.5: 0.7, 1.0: 0.3}, norm="l2"),
    ]


def write_examples(run_dir: Path, models: Iterable[str] = ("digits/a-standard",), n: int = 2) -> Path:
    """A small ``examples.npz`` of 8x8 grey images (the format of robustbench_cnn.evaluation.examples)."""
    from robustbench_cnn.evaluation.examples import save_examples

    rng = np.random.default_rng(0)
    parts = []
    for model in models:
        x = rng.random((n, 1, 8, 8)).astype(np.float32)
        x_adv = np.clip(x + rng.choice([-0.1, 0.1], size=x.shape), 0, 1).astype(np.float32)
        parts.append(
            {
                "x": x,
                "x_adv": x_adv,
                "y": np.arange(n),
                "pred_clean": np.arange(n),
                "pred_adv": (np.arange(n) + 1) % 10,
                "model": np.array([model] * n),
                "norm": np.array(["linf"] * n),
                "eps": np.full(n, 0.1),
            }
        )
    return save_examples(parts, run_dir / "examples.npz", classes=[str(i) for i in range(10)])


def write_transfer(run_dir: Path, models: Iterable[str] = ("digits/a-standard", "digits/b-pgd-at")) -> Path:
    """A ``transfer_matrix.parquet`` in the long format of attacks.blackbox.matrix."""
    models = list(models)
    rows = [
        {
            "source": s,
            "target": t,
            "attack": "fgsm",
            "norm": "linf",
            "eps": 0.3,
            "targeted": False,
            "white_box": s == t,
            "n": 50,
            "successes": 40 if s == t else 20,
            "success_rate": 0.8 if s == t else 0.4,
        }
        for s in models
        for t in models
    ]
    path = run_dir / "transfer_matrix.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def transfer_rows(
    model: str, clean: float, curve: dict[float, float], source: str, *, n: int = 80, attacked: int | None = None
) -> list[dict[str, Any]]:
    """Summary rows of a black-box transfer cell (``attack_kind`` transfer, ``source`` and ``attacked`` set), as
    the transfer cell writes them: one row per eps, cascade ``proxy:<target>``."""
    from robustbench_cnn.tables.rows import accuracy_cis

    rows = cell_rows(model, clean, curve, attacks=["transfer:fgsm"], cascade="proxy:a-standard", n=n)
    out = []
    for row in rows:
        row.update(
            attack_kind="transfer", source=source, attacked=attacked if attacked is not None else round(clean * n)
        )
        out.append({**row, **accuracy_cis(row)})
    return out


def write_card(store: Path, name: str, recipe: str = "standard", **fields: Any) -> Path:
    """A model card (no weights: the report reads cards only) in the store ``store``."""
    from robustbench_cnn.store import ModelCard, update_card

    card = ModelCard(
        name=name,
        arch=fields.pop("arch", name.split("/")[-1].split("-")[0]),
        arch_kwargs={},
        dataset="digits",
        input_shape=[1, 8, 8],
        num_classes=10,
        classes=[str(i) for i in range(10)],
        mean=[0.0],
        std=[1.0],
        recipe=recipe,
        **fields,
    )
    folder = store / "checkpoints" / name
    folder.mkdir(parents=True, exist_ok=True)
    update_card(folder, card)
    return folder
