"""The workflows the commands call: each validates its request, builds the cell(s) and runs them through the one
runner (:func:`~robustbench_cnn.pipeline.runner.run_cells`), then returns plain results for printing.

- :func:`evaluate_model`: ``rbc attack`` / ``rbc evaluate``: one ``whitebox`` cell (a cascade, or one attack with
  parameters, along an epsilon list); target policy ``all`` goes to :func:`target_matrix`. An untargeted
  ``standard`` cascade on a store checkpoint also records its worst-case robust accuracy in the model card
  (:func:`record_cascade_accuracy`, read by ``rbc tradeoff``).
- :func:`target_matrix`: one ``target-matrix`` cell (``target_matrix.parquet``).
- :func:`train_proxy`: ``rbc proxy train``: one ``proxy-train`` cell (``history.parquet``; the substitute goes to
  the model store).
- :func:`transfer`: ``rbc transfer``: one ``transfer`` cell (``summary.parquet``, ``samples.parquet``).
- :func:`transfer_matrix`: ``rbc transfer-matrix``: one ``transfer-matrix`` cell (``transfer_matrix.parquet``).
- :func:`certify_model`: ``rbc certify``: one ``certify`` cell (``certify.parquet``, ``certify_samples.parquet``).
- :func:`patch_model`: ``rbc patch``: one ``patch`` cell (``patch.parquet``, ``patch_samples.parquet``).

Every run folder also holds ``run.json`` (the command, the cells, the run metadata).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_cnn.core.errors import CheckpointError, RbcError
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE
from robustbench_cnn.pipeline.cells import (
    certify_cell,
    check_matrix,
    corruptions_cell,
    minimal_norm_cell,
    patch_cell,
    proxy_train_cell,
    target_matrix_cell,
    transfer_cell,
    transfer_matrix_cell,
    whitebox_cell,
)
from robustbench_cnn.pipeline.runner import run_cells

__all__ = [
    "CASCADE_META_KEY",
    "CASCADE_ROBUST_KEY",
    "CertifyRun",
    "EvaluationRun",
    "MatrixRun",
    "PatchRun",
    "ProxyRun",
    "TransferRun",
    "certify_model",
    "evaluate_model",
    "patch_model",
    "record_cascade_accuracy",
    "target_matrix",
    "threat_key",
    "train_proxy",
    "transfer",
    "transfer_matrix",
    "warn_eps",
]

#: Where an evaluation records the worst-case robust accuracy of the ``standard`` cascade in a model card's
#: ``extra`` (the key keeps the name cards were written with).
CASCADE_ROBUST_KEY = "suite_robust_accuracy"
#: Beside it, per ``norm:eps``: the sample count, seed, cascade and date of the recorded figure.
CASCADE_META_KEY = "suite_robust_meta"

PathLike = str | os.PathLike


@dataclass
class EvaluationRun:
    """What :func:`evaluate_model` / :func:`target_matrix` produced."""

    run_dir: Path
    summary: pd.DataFrame
    recorded: dict[str, float] = field(default_factory=dict)  # norm:eps -> accuracy recorded in the card
    target_matrix: pd.DataFrame | None = None  # target policy ``all``: the long matrix table
    attack: str = ""  # target policy ``all``: the attack's name
    norm: str = ""
    corruptions: pd.DataFrame | None = None  # a corruption threat: the ``corruptions`` table (summary is empty)


def _curve(threat: str, eps: str | list[float] | None) -> tuple[str, list[float]]:
    curve = ThreatModel.parse_curve(threat, eps)
    return curve[0].norm.value, [t.eps for t in curve]


def _check_attacks(cascade: str, attack_params: dict[str, Any] | None, norm: str) -> None:
    """The attacks of ``cascade`` (one attack with ``attack_params``) can run at ``norm`` (``ValueError``)."""
    from robustbench_cnn.core.types import Norm
    from robustbench_cnn.evaluation.engine import resolve_attacks

    one = attack_params and "," not in cascade
    resolve_attacks([(cascade, attack_params)] if one else cascade, Norm.parse(norm))


def warn_eps(norm: str, eps_list: list[float], dataset: str, data_dir: PathLike | None = None) -> list[str]:
    """Print (stderr, before the run) a warning for each epsilon too large to mean anything on ``dataset``'s
    images (:func:`~robustbench_cnn.evaluation.flags.eps_warnings`); returns the warnings."""
    from robustbench_cnn.core.progress import console
    from robustbench_cnn.core.types import Norm
    from robustbench_cnn.data import dataset_info
    from robustbench_cnn.evaluation.flags import eps_warnings

    warnings = eps_warnings(Norm.parse(norm), eps_list, dataset_info(dataset, data_dir).input_shape)
    for text in warnings:
        console.print(f"Warning: {text}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    return warnings


def _is_corruption_threat(threat: str) -> bool:
    """Whether ``threat`` parses (:meth:`ThreatModel.parse`, which raises on a malformed corruption spelling) to a
    :class:`~robustbench_cnn.core.corruption_threat.CorruptionThreat`; a bare norm (``linf``) is a norm threat."""
    from robustbench_cnn.core.corruption_threat import CorruptionThreat

    if ":" not in str(threat) and not str(threat).strip().lower().startswith("corruption"):
        return False  # a bare norm: its epsilons come from --eps (parse_curve)
    return isinstance(ThreatModel.parse(threat), CorruptionThreat)


def _is_minimal_norm_attack(cascade: str) -> bool:
    """Whether ``cascade`` names one registered minimal-norm attack (``fmn``, ``fab``, ``ddn``)."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.evaluation.minimal_norm import is_minimal_norm

    return "," not in cascade and cascade in ATTACKS and is_minimal_norm(ATTACKS.get(cascade))


def check_model_source(model: str | None, model_def: str | None, weights: str | None) -> None:
    """A store model, or a bring-your-own ``model_def`` (``file.py:factory``) with its optional ``weights``:
    ``ValueError`` naming the options when neither is given, or ``weights`` come without ``model_def``."""
    if not model and not model_def:
        raise ValueError("give --model NAME|PATH, or --model-def file.py:factory --weights FILE")
    if weights and not model_def:
        raise ValueError(
            "--weights is only used with --model-def file.py:factory (a --model checkpoint brings its own weights)"
        )


def evaluate_model(
    model: str | None,
    *,
    cascade: str = DEFAULT_CASCADE,
    attack_params: dict[str, Any] | None = None,
    model_def: str | None = None,
    weights: str | None = None,
    dataset: str = "digits",
    threat: str = "linf",
    eps: str | list[float] | None = None,
    n: int | None = 1000,
    targeted: bool = False,
    target_policy: str = "random",
    seed: int = 0,
    batch_size: int = 256,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> EvaluationRun:
    """Evaluate ``model`` (store name or checkpoint path) or a bring-your-own ``model_def`` (``file.py:factory``,
    optional ``weights``) against ``cascade`` (``fast`` | ``quick`` | ``standard`` | ``plus``, attack names, or one attack with
    ``attack_params``) at the epsilons of ``threat``/``eps`` (``ThreatModel.parse_curve``), into the run folder
    ``out``. Target policy ``all`` makes the true x target matrix of one attack (:func:`target_matrix`). A
    corruption ``threat`` (``corruptions``, ``corruption:fog:3``, ...) runs one ``corruptions`` cell instead
    (no attack; the accuracies are in :attr:`EvaluationRun.corruptions`). One untargeted minimal-norm attack
    (``fmn``, ``fab``, ``ddn``) runs one ``minimal-norm`` cell: its curve from one run, the growing ball (``pgd``)
    and their worst case, in the summary rows."""
    from robustbench_cnn.core.devices import resolve_device

    check_model_source(model, model_def, weights)
    resolve_device(device)
    label = model or model_def or ""
    if str(threat).strip().lower().split(":", 1)[0].strip() == "patch":
        ThreatModel.parse(threat, None)  # a malformed patch threat is its own error
        raise ValueError(f"{threat!r} is a patch threat: evaluate patches with rbc patch --threat {threat}")
    if _is_corruption_threat(threat):
        if eps:
            raise ValueError(f"--eps is for a norm threat; {threat!r} is a corruption threat (it has no epsilon)")
        cell = corruptions_cell(
            label,
            dataset,
            threat,
            n=n,
            seed=seed,
            batch_size=batch_size,
            device=device,
            data_dir=data_dir,
            store=store,
            model_def=model_def,
            weights=weights,
        )
        run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "evaluate"})
        return EvaluationRun(run.dir, run.summary(), corruptions=run.table("corruptions"))
    norm, eps_list = _curve(threat, eps)
    _check_attacks(cascade, attack_params, norm)  # a norm no attack takes stays one error line, without warnings
    warn_eps(norm, eps_list, dataset, data_dir)
    if targeted and target_policy == "all":
        return target_matrix(
            label,
            cascade,
            attack_params=attack_params,
            model_def=model_def,
            weights=weights,
            dataset=dataset,
            threat=norm,
            eps=eps_list,
            n=n,
            seed=seed,
            batch_size=batch_size,
            out=out,
            resume=resume,
            data_dir=data_dir,
            store=store,
            device=device,
            progress=progress,
        )
    if not targeted and _is_minimal_norm_attack(cascade):
        cell = minimal_norm_cell(
            label,
            dataset,
            norm,
            eps_list,
            cascade,
            attack_params=attack_params,
            n=n,
            seed=seed,
            batch_size=batch_size,
            device=device,
            data_dir=data_dir,
            store=store,
            model_def=model_def,
            weights=weights,
        )
        run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "evaluate"})
        return EvaluationRun(run.dir, run.summary())
    cell = whitebox_cell(
        label,
        dataset,
        norm,
        eps_list,
        cascade,
        attack_params=attack_params,
        n=n,
        targeted=targeted,
        target_policy=target_policy,
        seed=seed,
        batch_size=batch_size,
        device=device,
        data_dir=data_dir,
        store=store,
        model_def=model_def,
        weights=weights,
    )
    run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "evaluate"})
    summary = run.summary()
    recorded: dict[str, float] = {}
    if cascade in ("standard", DEFAULT_CASCADE) and model and not model_def and not targeted:
        try:
            recorded = record_cascade_accuracy(model, summary, store, cascade)
        except CheckpointError:  # a model that is not a store checkpoint (e.g. a RobustBench name)
            recorded = {}
    return EvaluationRun(run.dir, summary, recorded)


def target_matrix(
    model: str,
    attack: str,
    *,
    attack_params: dict[str, Any] | None = None,
    model_def: str | None = None,
    weights: str | None = None,
    dataset: str = "digits",
    threat: str = "linf",
    eps: str | list[float] | None = None,
    n: int | None = 1000,
    seed: int = 0,
    batch_size: int = 256,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> EvaluationRun:
    """The true class x target class success matrix of one targeted ``attack`` at each epsilon, written to
    ``target_matrix.parquet`` in the run folder ``out`` (default ``results/targets-...``)."""
    from robustbench_cnn.attacks import ATTACKS

    if attack not in ATTACKS:
        raise RbcError(
            f"--target-policy all makes a true x target matrix for one attack, not the cascade "
            f"{attack!r}: use rbc attack -a NAME --targeted --target-policy all"
        )
    norm, eps_list = _curve(threat, eps)
    cell = target_matrix_cell(
        model,
        dataset,
        norm,
        eps_list,
        attack,
        attack_params=attack_params,
        n=n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        data_dir=data_dir,
        store=store,
        model_def=model_def,
        weights=weights,
    )
    run = run_cells(
        [cell], out, resume=resume, progress=progress, config={"command": "target-matrix"}, prefix="targets"
    )
    table = run.table("target_matrix")
    return EvaluationRun(run.dir, run.summary(), target_matrix=table, attack=attack, norm=norm)


@dataclass
class ProxyRun:
    """What :func:`train_proxy` produced: the run folder, the per-round history, the substitute's store name and
    folder, and the oracle queries spent."""

    run_dir: Path
    history: pd.DataFrame
    target: str
    substitute: str
    folder: Path
    queries: int


def _card(name: str, store: PathLike | None) -> Any:
    from robustbench_cnn.store import read_card, resolve_checkpoint

    return read_card(resolve_checkpoint(name, store))


def train_proxy(
    target: str,
    substitute: str = "lenet5",
    *,
    dataset: str | None = None,
    seed_size: int = 150,
    rounds: int = 6,
    lam: float = 0.1,
    tau: int = 3,
    budget: int | None = 6400,
    oracle_mode: str = "labels",
    epochs_per_round: int = 10,
    reservoir: int | None = None,
    growth: str = "budget",
    augmentations: tuple[str, ...] = ("shift-jacobian", "shift-fgsm"),
    members: int = 3,
    member_epochs: int = 30,
    tag: str | None = None,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> ProxyRun:
    """Train a ``substitute`` architecture of ``target`` (a store checkpoint queried as an oracle) by Jacobian
    augmentation (Papernot et al. 2017; see ``train_substitute`` for the options), save it to the model store and
    write its per-round history to ``history.parquet`` in the run folder ``out`` (default ``results/proxy-...``)."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.models import MODELS
    from robustbench_cnn.store import resolve_checkpoint

    MODELS.get(substitute)
    resolve_device(device)
    card = _card(target, store)
    options = {
        "seed_size": seed_size,
        "rounds": rounds,
        "lam": lam,
        "tau": tau,
        "budget": budget,
        "epochs_per_round": epochs_per_round,
        "oracle_mode": oracle_mode,
        "max_new_per_round": reservoir,
        "growth": growth,
        "augmentations": list(augmentations),
        "members": members,
        "member_epochs": member_epochs,
        "tag": tag,
    }
    cell = proxy_train_cell(
        target,
        dataset or card.dataset,
        substitute,
        options=options,
        seed=seed,
        device=device,
        data_dir=data_dir,
        store=store,
    )
    run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "proxy train"}, prefix="proxy")
    history = run.table("history")
    name = str(history["substitute"].iloc[-1])
    return ProxyRun(
        run.dir,
        history,
        str(history["target"].iloc[-1]),
        name,
        resolve_checkpoint(name, store),
        int(history["queries"].iloc[-1]),
    )


@dataclass
class TransferRun:
    """What :func:`transfer` produced: the run folder, its summary rows and the names of the models."""

    run_dir: Path
    summary: pd.DataFrame
    sources: list[str]
    target: str
    attack: str


def _names(text: str | list[str], option: str) -> list[str]:
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    names = [t for t in names if t]
    if not names:
        raise ValueError(f"{option} needs at least one checkpoint name")
    return names


def transfer(
    sources: str | list[str],
    target: str,
    attack: str = "fgsm",
    *,
    attack_params: dict[str, Any] | None = None,
    threat: str = "linf",
    eps: str | list[float] | None = None,
    n: int | None = 1000,
    targeted: bool = False,
    target_policy: str = "random",
    dataset: str | None = None,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> TransferRun:
    """Transfer ``attack`` crafted on ``sources`` (checkpoints; several are ensembled) to ``target`` at the
    epsilons of ``threat``/``eps``, untargeted or with ``target_policy``; rows to the run folder ``out`` (default
    ``results/transfer-...``)."""
    from robustbench_cnn.attacks.blackbox.transfer import _make_attack
    from robustbench_cnn.attacks.targets import parse_policy
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.types import Norm

    if eps is None and ":" not in threat:
        raise ValueError(f"no epsilon: give --threat {Norm.parse(threat).value}:EPS or --eps 0.1,0.2,0.3")
    norm, eps_list = _curve(threat, eps)
    atk = _make_attack(attack, attack_params)  # bad names fail before anything is loaded
    if targeted:
        parse_policy(target_policy)
    resolve_device(device)
    names = _names(sources, "--source")
    target_card = _card(target, store)
    source_cards = [_card(name, store) for name in names]
    warn_eps(norm, eps_list, dataset or target_card.dataset, data_dir)
    cell = transfer_cell(
        names,
        target,
        dataset or target_card.dataset,
        norm,
        eps_list,
        attack,
        attack_params=attack_params,
        n=n,
        targeted=targeted,
        target_policy=target_policy,
        seed=seed,
        device=device,
        data_dir=data_dir,
        store=store,
    )
    run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "transfer"}, prefix="transfer")
    return TransferRun(run.dir, run.summary(), [c.name for c in source_cards], target_card.name, atk.name)


@dataclass
class MatrixRun:
    """What :func:`transfer_matrix` produced: the run folder and the long source x target table."""

    run_dir: Path
    table: pd.DataFrame
    attack: str
    threat: str
    n: int


def transfer_matrix(
    models: str | list[str],
    threat: str,
    attack: str = "fgsm",
    *,
    attack_params: dict[str, Any] | None = None,
    n: int | None = 1000,
    dataset: str | None = None,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> MatrixRun:
    """The success of ``attack`` crafted on every model of ``models`` against every one of them at ``threat``
    (``NORM:EPS``), to ``transfer_matrix.parquet`` in the run folder ``out`` (default
    ``results/transfer-matrix-...``)."""
    from robustbench_cnn.core.devices import resolve_device

    tm = ThreatModel.parse_ball(threat)
    names = _names(models, "--models")
    check_matrix(names, attack, attack_params)  # two models at least, no duplicate, a white-box attack
    resolve_device(device)
    cell = transfer_matrix_cell(
        names,
        dataset or _card(names[0], store).dataset,
        str(tm),
        attack,
        attack_params=attack_params,
        n=n,
        seed=seed,
        device=device,
        data_dir=data_dir,
        store=store,
    )
    run = run_cells(
        [cell], out, resume=resume, progress=progress, config={"command": "transfer-matrix"}, prefix="transfer-matrix"
    )
    table = run.table("transfer_matrix")
    n_points = int(table["n_points"].iloc[0]) if len(table) else 0
    return MatrixRun(run.dir, table, str(cell.params["attack"]), str(tm), n_points)


# ------------------------------------------------------------------------------------------ model cards


def threat_key(threat: str | None) -> str:
    """The canonical ``str(ThreatModel)`` form (``linf:0.30`` -> ``linf:0.3``, ``linf:0.0313725...`` ->
    ``linf:8/255``), so a card's threat and a summary's norm and eps name the same entry."""
    try:
        return str(ThreatModel.parse_ball(threat or ""))
    except ValueError:
        return threat or ""


def record_cascade_accuracy(
    checkpoint: PathLike, summary: pd.DataFrame, store: PathLike | None = None, cascade: str = "standard"
) -> dict[str, float]:
    """Record the untargeted worst-case robust accuracy of ``cascade`` from a run's ``summary`` in the card of
    ``checkpoint`` (``extra["suite_robust_accuracy"]``, one entry per ``norm:eps``), where the trade-off table
    reads it, with its sample count, seed, cascade and date (``extra["suite_robust_meta"]``, per ``norm:eps``).

    A figure measured on more points is never replaced by one on fewer: that entry keeps the larger-n figure and a
    one-line note on stderr says so (a figure recorded before ``n`` was kept per entry counts with the card's
    last ``suite_eval`` n). Returns what was recorded (empty when the summary holds no such rows). A summary
    written before the ``suite`` column became ``cascade`` is read too."""
    import datetime as dt

    from robustbench_cnn.core.progress import console
    from robustbench_cnn.store import read_card, resolve_checkpoint, update_card
    from robustbench_cnn.tables.results import with_cascade

    summary = with_cascade(summary)
    rows = summary[(summary["cascade"] == cascade) & (~summary["targeted"].astype(bool))]
    if rows["attack"].eq("worst-case").any():
        rows = rows[rows["attack"] == "worst-case"]
    elif len(rows):
        rows = rows[rows["attack"] == rows["attack"].iloc[-1]]  # a one-attack cascade: its own rows
    if not len(rows):
        return {}
    folder = resolve_checkpoint(checkpoint, store)
    card = read_card(folder)
    n, seed = int(rows["n"].iloc[0]), int(rows["seed"].iloc[0])
    today = dt.date.today().isoformat()
    measured = {threat_key(f"{r.norm}:{r.eps}"): float(r.robust_acc) for r in rows.itertuples()}
    previous = card.extra.get(CASCADE_ROBUST_KEY)
    merged = dict(previous) if isinstance(previous, dict) else {}
    if isinstance(previous, (int, float)) and not isinstance(previous, bool) and card.threat:
        merged[threat_key(card.threat)] = float(previous)  # the float form: at the card's threat
    meta = dict(card.extra.get(CASCADE_META_KEY) or {})
    last_n = (card.extra.get("suite_eval") or {}).get("n")
    recorded: dict[str, float] = {}
    for key, acc in measured.items():
        old_n = (meta.get(key) or {}).get("n", last_n if key in merged else None)
        if old_n is not None and int(old_n) > n:
            console.print(
                f"Note: kept the card's {cascade} figure at {key} ({merged[key]:.4f}, n={int(old_n)}); this run's "
                f"{acc:.4f} on n={n} points is not recorded (a smaller-n figure never replaces a larger-n one)",
                style="yellow",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            continue
        recorded[key] = merged[key] = acc
        meta[key] = {"n": n, "seed": seed, "cascade": cascade, "date": today}
    if not recorded:
        return {}
    card.extra[CASCADE_ROBUST_KEY] = merged
    card.extra[CASCADE_META_KEY] = meta
    card.extra["suite_eval"] = {"suite": cascade, "n": n, "seed": seed}
    update_card(folder, card)
    return recorded


@dataclass
class CertifyRun:
    """What :func:`certify_model` produced: the run folder and the ``certify`` table (one row per radius)."""

    run_dir: Path
    table: pd.DataFrame


def certify_model(
    model: str,
    *,
    sigma: float,
    radii: str | list[float],
    dataset: str = "digits",
    n: int | None = 100,
    n0: int = 100,
    noise_samples: int = 10_000,
    alpha: float = 0.001,
    attack_steps: int = 20,
    attack_noise_samples: int = 16,
    seed: int = 0,
    batch_size: int = 1000,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> CertifyRun:
    """Certify and attack the smoothed classifier of ``model`` (store name or checkpoint path) at noise ``sigma``
    at each L2 radius of ``radii`` (comma-separated or a list) on ``n`` test points: one ``certify`` cell
    (:mod:`robustbench_cnn.pipeline.cells.certify`) into the run folder ``out``."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.types import parse_eps, parse_eps_list

    if not model:
        raise ValueError("give --model NAME|PATH (a model trained with noise, e.g. rbc defend gaussian-noise)")
    resolve_device(device)
    try:
        radius_list = parse_eps_list(radii) if isinstance(radii, str) else sorted({parse_eps(r) for r in radii})
    except ValueError as exc:
        raise ValueError(f"invalid --radii {radii!r}: {exc}") from None
    cell = certify_cell(
        model,
        dataset,
        sigma=sigma,
        radii=radius_list,
        n0=n0,
        noise_samples=noise_samples,
        alpha=alpha,
        attack_steps=attack_steps,
        attack_noise_samples=attack_noise_samples,
        n=n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        data_dir=data_dir,
        store=store,
    )
    run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "certify"})
    return CertifyRun(run.dir, run.table("certify"))


@dataclass
class PatchRun:
    """What :func:`patch_model` produced: the ``patch`` table (one row per size and target) and its samples."""

    run_dir: Path
    table: pd.DataFrame
    samples: pd.DataFrame


def patch_model(
    model: str | None,
    *,
    threat: str = "patch:0.1",
    sizes: str | list[float] | None = None,
    target: str | None = None,
    model_def: str | None = None,
    weights: str | None = None,
    dataset: str = "digits",
    n: int | None = 1000,
    train_n: int | None = 10_000,
    placements: int = 1,
    attack_params: dict[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    out: PathLike | None = None,
    resume: bool = False,
    data_dir: PathLike | None = None,
    store: PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
) -> PatchRun:
    """Universal adversarial patches against ``model`` (store name or checkpoint path) or a bring-your-own
    ``model_def``: one patch per area (``threat`` ``patch:AREA``, or ``sizes`` comma-separated) and per ``target``
    (``none``: untargeted, a class, ``all``, or a mix such as ``none,3``), learned on ``train_n`` training images
    and evaluated on ``n`` test points at ``placements`` random positions each: one ``patch`` cell
    (:mod:`robustbench_cnn.pipeline.cells.patch`) into the run folder ``out``."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.patch_threat import PatchThreat
    from robustbench_cnn.data import dataset_info
    from robustbench_cnn.pipeline.cells.patch import parse_patch_targets

    check_model_source(model, model_def, weights)
    resolve_device(device)
    threats = PatchThreat.parse_sizes(threat, sizes)
    targets = parse_patch_targets(target, dataset_info(dataset, data_dir).num_classes)
    cell = patch_cell(
        model or model_def or "",
        dataset,
        [t.area for t in threats],
        targets,
        attack_params=attack_params,
        train_n=train_n,
        placements=placements,
        n=n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        data_dir=data_dir,
        store=store,
        model_def=model_def,
        weights=weights,
    )
    run = run_cells([cell], out, resume=resume, progress=progress, config={"command": "patch"})
    return PatchRun(run.dir, run.table("patch"), run.table("patch_samples"))
