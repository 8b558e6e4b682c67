"""Results tables: long-format pandas tables with explicit dtypes, written cell by cell, atomically.

A run folder ``results/<run-id>/`` holds:

- ``cells/<cell-id>.summary.parquet`` and ``cells/<cell-id>.samples.parquet``: one pair per finished cell,
  each written to a temporary file and renamed into place, so a killed run leaves whole cells only;
- ``cells/<cell-id>.<name>.parquet``: a cell's other tables (``transfer_matrix``, ``target_matrix``, ``history``);
- ``summary.parquet``: one row per model x attack x threat x eps (the concatenation of the cells);
- ``samples.parquet``: one row per sample x attack x eps;
- ``<name>.parquet``: each other table, concatenated over the cells that wrote one;
- ``run.json``: the command, the configuration and the run metadata.

Resuming (``RunStore.has_cell``) skips finished cells; rebuilding the tables from the cell files means a
resumed run has exactly the rows of an uninterrupted one: none lost, none duplicated.
:class:`RunStore` is the one writer of a run folder (parquet and JSON, each atomically). This module knows nothing
of attacks: it stores plain rows.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.files import give_default_mode

SCHEMA_VERSION = 1

#: Summary columns and their dtypes (pandas extension dtypes, so missing values stay typed).
SUMMARY_SCHEMA: dict[str, str] = {
    "schema_version": "Int64",
    "run_id": "string",
    "cell_id": "string",
    "model": "string",
    "checkpoint_sha256": "string",
    "arch": "string",
    "dataset": "string",
    "split": "string",
    "n": "Int64",
    "defense": "string",
    "cascade": "string",
    "attack": "string",
    "attack_kind": "string",
    "attack_params": "string",
    "targeted": "boolean",
    "target_policy": "string",
    "norm": "string",
    "eps": "Float64",
    "clean_acc": "Float64",
    "clean_acc_lo": "Float64",
    "clean_acc_hi": "Float64",
    "robust_acc": "Float64",
    "robust_acc_lo": "Float64",
    "robust_acc_hi": "Float64",
    "success_rate": "Float64",
    "mean_norm": "Float64",
    "median_norm": "Float64",
    "mean_queries": "Float64",
    "total_queries": "Int64",
    "seed": "Int64",
    "device": "string",
    "elapsed_s": "Float64",
    "flags": "string",
    "versions": "string",
    "git_sha": "string",
    "timestamp": "string",
}

SAMPLES_SCHEMA: dict[str, str] = {
    "run_id": "string",
    "cell_id": "string",
    "model": "string",
    "dataset": "string",
    "attack": "string",
    "norm": "string",
    "eps": "Float64",
    "sample_id": "Int64",
    "label": "Int64",
    "clean_correct": "boolean",
    "success": "boolean",
    "robust": "boolean",
    "perturbation_norm": "Float64",
    "queries": "Int64",
    "pred_clean": "Int64",
    "pred_adv": "Int64",
    "target": "Int64",
}

#: The 95% Clopper-Pearson interval columns of the accuracies (rate -> (low, high)); tables written before they
#: existed lack them and are read with NaN there (:func:`with_ci_columns`).
CI_COLUMNS: dict[str, tuple[str, str]] = {
    "clean_acc": ("clean_acc_lo", "clean_acc_hi"),
    "robust_acc": ("robust_acc_lo", "robust_acc_hi"),
}

#: Summary columns that only some cells write (transfer rows: the source models and the points attacked).
EXTRA_SUMMARY_COLUMNS: dict[str, str] = {"source": "string", "attacked": "Int64"}

#: Columns that depend on the machine or the moment, not on the computation (excluded from equality checks).
VOLATILE_COLUMNS = ("run_id", "elapsed_s", "timestamp", "device", "versions", "git_sha")

#: The summary column an attack cascade's name was stored in before it was called ``cascade``.
LEGACY_CASCADE_COLUMN = "suite"


def with_cascade(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a legacy ``suite`` column (tables written before the rename, e.g. a committed baseline)
    renamed to ``cascade``; a frame that has ``cascade`` already is returned unchanged."""
    if LEGACY_CASCADE_COLUMN in frame.columns and "cascade" not in frame.columns:
        return frame.rename(columns={LEGACY_CASCADE_COLUMN: "cascade"})
    return frame


def with_ci_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`CI_COLUMNS` it lacks added as NaN (an older table: its intervals are unknown, not
    recomputed here); a frame that has them all is returned unchanged."""
    missing = [c for pair in CI_COLUMNS.values() for c in pair if c not in frame.columns]
    if not missing:
        return frame
    frame = frame.copy()
    for col in missing:
        frame[col] = pd.Series(float("nan"), index=frame.index, dtype="Float64")
    return frame


def typed_frame(rows: Iterable[dict[str, Any]], schema: dict[str, str]) -> pd.DataFrame:
    """A DataFrame with exactly the schema's columns, in order, with its dtypes (missing -> NA)."""
    frame = pd.DataFrame(list(rows))
    for col in schema:
        if col not in frame:
            frame[col] = pd.NA
    frame = frame[list(schema)]
    return frame.astype(schema) if len(frame) else frame.astype(schema)


def cell_id(**key: Any) -> str:
    """A stable, file-system safe id of a cell from its defining key (sorted JSON, hashed); the readable prefix
    names the model, the cell kind, the cascade and the norm where the key (or its ``params``) has them."""
    text = json.dumps(key, sort_keys=True, default=str)
    params = key.get("params") if isinstance(key.get("params"), dict) else {}
    parts = [key.get(k, params.get(k)) for k in ("model", "kind", "cascade", "norm")]
    readable = "-".join(str(p) for p in parts if p not in (None, ""))
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", readable)[:80]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        give_default_mode(tmp)  # mkstemp's 0600 -> what the umask allows (a shared results folder)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        give_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_run_id(prefix: str = "run") -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{os.getpid() % 10000:04d}"


def run_folder(out: str | os.PathLike | None, resume: bool, prefix: str = "run") -> Path:
    """The run folder: ``out``, or a new ``results/<prefix>-<time>-<pid>``. Resuming needs ``out`` (a new
    folder would silently start afresh), so ``resume`` without it is an error."""
    if out:
        return Path(out)
    if resume:
        raise RbcError("--resume needs the run folder to continue: pass --out (-o) with it")
    return Path("results") / new_run_id(prefix)


class RunStore:
    """The folder of one run: cells written atomically, tables rebuilt from the cells."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.dir = Path(run_dir)
        self.cells_dir = self.dir / "cells"

    @property
    def run_id(self) -> str:
        return self.dir.name

    def check_fresh(self, resume: bool) -> None:
        """Refuse a run folder that already holds cells unless resuming (results are never silently mixed),
        and a path that cannot be a run folder (an existing file, or a place that cannot be written)."""
        if self.dir.exists() and not self.dir.is_dir():
            raise RbcError(f"run folder {self.dir} is an existing file: choose another --out")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RbcError(f"cannot create run folder {self.dir}: {exc.strerror or exc}") from None
        if not os.access(self.dir, os.W_OK):
            raise RbcError(f"run folder {self.dir} is not writable: choose another --out")
        if not resume and self.cells_dir.exists() and any(self.cells_dir.iterdir()):
            raise RbcError(
                f"run folder {self.dir} already holds results: pass --resume to continue it, or choose another --out"
            )

    def has_cell(self, cid: str) -> bool:
        return (self.cells_dir / f"{cid}.summary.parquet").exists()

    def finished_cells(self) -> set[str]:
        """Ids of the cells whose summary landed (the summary file marks a finished cell)."""
        if not self.cells_dir.exists():
            return set()
        return {f.name[: -len(".summary.parquet")] for f in self.cells_dir.glob("*.summary.parquet")}

    def check_plan(self, planned: Iterable[str], resume: bool) -> None:
        """Refuse to resume into a folder holding finished cells this run does not plan.

        Such cells come from a different request (other models or weights, epsilons, ``-n``, seed, cascade):
        resuming would put their rows beside the new ones in the same tables. Nothing is deleted; the user
        reruns the original command or picks another folder."""
        self.check_fresh(resume)
        stale = self.finished_cells() - set(planned)
        if stale:
            raise RbcError(
                f"run folder {self.dir} holds {len(stale)} finished cell(s) of a different request "
                f"(other models, weights, epsilons, -n, seed or cascade): resuming would mix them into "
                f"this run's tables; rerun the original command with --resume, or choose another --out"
            )

    def write_cell(
        self,
        cid: str,
        summary: pd.DataFrame,
        samples: pd.DataFrame | None = None,
        tables: dict[str, pd.DataFrame] | None = None,
    ) -> None:
        """Write one finished cell: its other tables and samples first, the summary last (the summary file
        marks completion, so a killed run leaves no half cell behind)."""
        for name, table in (tables or {}).items():
            if name in ("summary", "samples") or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"invalid table name {name!r}: use lower-case letters, digits and _")
            atomic_write_parquet(table, self.cells_dir / f"{cid}.{name}.parquet")
        if samples is not None:
            atomic_write_parquet(samples, self.cells_dir / f"{cid}.samples.parquet")
        atomic_write_parquet(summary, self.cells_dir / f"{cid}.summary.parquet")

    def _ids(self, cells: Iterable[str] | None) -> list[str]:
        ids = self.finished_cells()  # only cells whose summary landed; with ``cells``, only those
        if cells is not None:
            ids &= set(cells)
        return sorted(ids)

    def _concat(self, kind: str, schema: dict[str, str], cells: Iterable[str] | None = None) -> pd.DataFrame:
        files = [self.cells_dir / f"{cid}.{kind}.parquet" for cid in self._ids(cells)]
        frames = [pd.read_parquet(f) for f in files if f.exists()]
        frames = [f for f in frames if len(f)]
        if not frames:
            return typed_frame([], schema)
        frame = pd.concat(frames, ignore_index=True)
        return frame.astype({c: t for c, t in {**schema, **EXTRA_SUMMARY_COLUMNS}.items() if c in frame})

    def summary(self, cells: Iterable[str] | None = None) -> pd.DataFrame:
        return self._concat("summary", SUMMARY_SCHEMA, cells)

    def samples(self, cells: Iterable[str] | None = None) -> pd.DataFrame:
        return self._concat("samples", SAMPLES_SCHEMA, cells)

    def table_names(self, cells: Iterable[str] | None = None) -> list[str]:
        """Names of the other tables the finished cells (only ``cells`` when given) wrote."""
        names = set()
        for cid in self._ids(cells):
            for path in self.cells_dir.glob(f"{cid}.*.parquet"):
                name = path.name[len(cid) + 1 : -len(".parquet")]
                if name not in ("summary", "samples") and "." not in name:
                    names.add(name)
        return sorted(names)

    def table(self, name: str, cells: Iterable[str] | None = None) -> pd.DataFrame:
        """The table ``name`` of the finished cells (only ``cells`` when given), concatenated in cell order."""
        files = [self.cells_dir / f"{cid}.{name}.parquet" for cid in self._ids(cells)]
        frames = [pd.read_parquet(f) for f in files if f.exists()]
        frames = [f for f in frames if len(f)] or frames[:1]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def finalize(self, cells: Iterable[str] | None = None) -> tuple[Path, Path]:
        """(Re)write ``summary.parquet``, ``samples.parquet`` and each other table (``<name>.parquet``) from the
        finished cells (only ``cells``, the run's plan, when given)."""
        cells = list(cells) if cells is not None else None
        summary_path, samples_path = self.dir / "summary.parquet", self.dir / "samples.parquet"
        atomic_write_parquet(self.summary(cells), summary_path)
        atomic_write_parquet(self.samples(cells), samples_path)
        for name in self.table_names(cells):
            atomic_write_parquet(self.table(name, cells), self.dir / f"{name}.parquet")
        return summary_path, samples_path

    def write_run_json(self, config: dict[str, Any]) -> Path:
        path = self.dir / "run.json"
        atomic_write_text(json.dumps(config, indent=2, sort_keys=True, default=str), path)
        return path


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """A summary table from a run folder or a parquet file, with the schema's dtypes."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.parquet"
    frame = with_cascade(pd.read_parquet(path))
    return frame.astype({c: t for c, t in {**SUMMARY_SCHEMA, **EXTRA_SUMMARY_COLUMNS}.items() if c in frame})


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The deterministic part of a summary, sorted by cell: equal for equal seeds, cascades and machines."""
    frame = with_cascade(frame)
    cols = [c for c in frame.columns if c not in VOLATILE_COLUMNS]
    keys = [c for c in ("model", "dataset", "cascade", "attack", "norm", "eps", "targeted") if c in cols]
    return frame[cols].sort_values(keys).reset_index(drop=True)
