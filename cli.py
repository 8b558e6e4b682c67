"""``rbc``: the command line of robustbench-cnn. Commands only parse options and call the library.

Errors caused by input (unknown names, bad epsilons, missing data, bad checkpoints, shape mismatches)
are printed as one line and exit with code 2; they never show a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from robustbench_cnn.commands.errors import RbcGroup, parse_key_values


class _Out:
    """Results go to stdout (progress and warnings go to stderr); wide when piped, so tables stay whole."""

    def print(self, *objects: Any) -> None:
        Console(width=None if sys.stdout.isatty() else 240).print(*objects)


out = _Out()


# --- shared options (defined once) ----------------------------------------------------------------


def _compose(*decorators: Callable) -> Callable:
    def apply(fn: Callable) -> Callable:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn

    return apply


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data root (default: $RBC_DATA_DIR, else ~/.cache/robustbench_cnn/data).",
)
store_option = click.option(
    "--store",
    type=click.Path(file_okay=False),
    default=None,
    help="Model store (default: $RBC_HOME, else ~/.cache/robustbench_cnn).",
)
device_option = click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
dataset_option = click.option(
    "--dataset",
    "-d",
    default="digits",
    show_default=True,
    help="digits | mnist | fashion-mnist | cifar10 | imagefolder:PATH.",
)
progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
common_options = _compose(data_dir_option, store_option, device_option, seed_option, progress_option)


def _parse_kv(pairs: tuple[str, ...], option: str = "--arch-arg") -> dict[str, Any]:
    return parse_key_values(pairs, option)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    table = Table(title=title)
    columns = columns or (list(rows[0]) if rows else [])
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in columns])
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


@click.group(cls=RbcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="robustbench-cnn")
@click.option(
    "--threads",
    type=int,
    envvar="RBC_THREADS",
    default=None,
    help="CPU threads for torch (default: torch's choice; env RBC_THREADS). Use 1 on a busy machine.",
)
def main(threads: int | None) -> None:
    """robustbench-cnn: train CNNs, attack them, defend them, and trust the robust accuracy you get."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"invalid --threads {threads}: must be >= 1")
        import torch

        torch.set_num_threads(threads)


# --- data -----------------------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Datasets."""


@data.command("list")
@data_dir_option
def data_list(data_dir: str | None) -> None:
    """Show each dataset, its shape, classes and whether it is available locally."""
    from robustbench_cnn.data import list_datasets

    out.print(_table("datasets", list_datasets(data_dir)))


# --- models ---------------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Architectures and trained checkpoints."""


@models.command("list")
@click.argument("pattern", default="*")
@store_option
def models_list(pattern: str, store: str | None) -> None:
    """Show registered architectures (matching PATTERN) and the trained checkpoints of the store."""
    from robustbench_cnn.models import MODELS
    from robustbench_cnn.store import list_checkpoints, store_root

    arch_rows = [
        {"architecture": name, "description": (MODELS.get(name).__doc__ or "").strip().splitlines()[0]}
        for name in MODELS.list(pattern)
    ]
    out.print(_table("architectures", arch_rows))
    cards = list_checkpoints(store)
    rows = [
        {
            "name": c.name,
            "dataset": c.dataset,
            "clean_acc": c.clean_accuracy,
            "recipe": c.recipe,
            "threat": c.threat or "",
            "epochs": c.epochs,
            "date": c.created[:19],
        }
        for c in cards
    ]
    title = f"checkpoints in {store_root(store) / 'checkpoints'}"
    out.print(_table(title, rows, ["name", "dataset", "clean_acc", "recipe", "threat", "epochs", "date"]))


# --- train ----------------------------------------------------------------------------------------


def train_options(fn: Callable) -> Callable:
    """Options shared by `rbc train` and `rbc defend` (one training loop for both)."""
    return _compose(
        click.option("--model", "-m", "arch", required=True, help="Registered architecture (rbc models list)."),
        dataset_option,
        click.option("--epochs", type=int, default=None, help="Epochs (default by dataset: digits 30, mnist 5)."),
        click.option("--batch-size", type=int, default=None, help="Batch size (default by dataset: 32 or 128)."),
        click.option("--lr", type=float, default=None, help="Peak learning rate (default by dataset)."),
        click.option(
            "--optimizer",
            type=click.Choice(["adam", "sgd"]),
            default=None,
            help="Optimizer (default by dataset: sgd for digits/cifar, adam for mnist).",
        ),
        click.option(
            "--schedule", type=click.Choice(["onecycle", "cosine", "constant"]), default="onecycle", show_default=True
        ),
        click.option("--weight-decay", type=float, default=5e-4, show_default=True),
        click.option("--augment/--no-augment", default=None, help="Random crops (and flips for RGB)."),
        click.option("--subset", type=int, default=None, help="Train on a seeded subset of N images."),
        click.option("--amp/--no-amp", default=False, help="Mixed precision on CUDA (bf16, else fp16)."),
        click.option("--channels-last/--no-channels-last", default=False, help="channels_last memory on CUDA."),
        click.option("--deterministic/--no-deterministic", default=False, help="Deterministic kernels."),
        click.option(
            "--normalize/--no-normalize",
            default=True,
            show_default=True,
            help="Normalize inputs with the dataset's mean/std inside the model (--no-normalize: raw "
            "[0, 1] pixels, as the MNIST robustness papers' nets).",
        ),
        click.option("--tag", default=None, help="Suffix of the checkpoint name."),
        click.option("--arch-arg", multiple=True, help="Architecture argument KEY=VALUE (e.g. depth=16)."),
        common_options,
    )(fn)


@main.command()
@train_options
@click.option("--init-from", default=None, help="Start from a trained checkpoint (transfer learning).")
@click.option(
    "--freeze", type=click.Choice(["features"]), default=None, help="With --init-from: train only the classifier head."
)
def train(
    arch: str,
    dataset: str,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    optimizer: str | None,
    schedule: str,
    weight_decay: float,
    augment: bool | None,
    subset: int | None,
    amp: bool,
    channels_last: bool,
    deterministic: bool,
    normalize: bool,
    tag: str | None,
    arch_arg: tuple[str, ...],
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
    init_from: str | None,
    freeze: str | None,
) -> None:
    """Train a standard model and save it to the model store."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.models import MODELS
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    MODELS.get(arch)  # unknown names fail before any data is loaded
    resolve_device(device)
    if freeze and not init_from:
        raise ValueError("--freeze features needs --init-from CHECKPOINT")
    config = TrainConfig.for_dataset(
        dataset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        schedule=schedule,
        weight_decay=weight_decay,
        augment=augment,
        amp=amp,
        channels_last=channels_last,
        deterministic=deterministic,
        device=device,
        seed=seed,
        freeze=freeze,
        normalize=normalize,
    )
    trained = train_model(
        arch,
        dataset,
        config,
        store=store,
        tag=tag,
        subset=subset,
        data_dir=data_dir,
        init_from=init_from,
        arch_kwargs=_parse_kv(arch_arg),
        progress=progress,
    )
    card = trained.card
    out.print(
        _table(
            "trained",
            [
                {
                    "checkpoint": card.name,
                    "clean_acc": trained.test_accuracy,
                    "epochs": card.epochs,
                    "train_s": card.train_time_s,
                    "images/s": round(trained.result.epochs[-1].images_per_s),
                    "device": trained.result.device,
                }
            ],
        )
    )
    out.print(f"saved to {trained.folder}")


# --- attack / evaluate ----------------------------------------------------------------------------


def eval_options(fn: Callable) -> Callable:
    """Options shared by `rbc attack` and `rbc evaluate`."""
    return _compose(
        click.option(
            "--model",
            "-m",
            "model",
            default=None,
            help="Checkpoint name (rbc models list) or path; or a label with --model-def.",
        ),
        click.option("--model-def", default=None, help="Bring your own model: path/to/file.py:factory."),
        click.option("--weights", default=None, help="With --model-def: a .safetensors (or weights-only .pt)."),
        dataset_option,
        click.option(
            "--threat",
            "-t",
            default="linf",
            show_default=True,
            help="Norm (linf, l2, l1), or NORM:EPS such as linf:8/255.",
        ),
        click.option("--eps", "-e", default=None, help="Comma-separated epsilons, e.g. 0,0.1,8/255."),
        click.option("-n", "n", type=int, default=1000, show_default=True, help="Test images (seeded subset)."),
        click.option("--targeted/--untargeted", default=False, show_default=True),
        click.option(
            "--target-policy", default="random", show_default=True, help="random | least-likely | next | class:K | all."
        ),
        click.option("--batch-size", type=int, default=256, show_default=True),
        click.option("--out", "-o", default=None, help="Run folder (default results/<run-id>)."),
        click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells."),
        common_options,
    )(fn)


def _threat_and_eps(threat: str, eps: str | None) -> tuple[str, list[float]]:
    from robustbench_cnn.core.types import Norm, ThreatModel, parse_eps_list

    if ":" in threat:
        parsed = ThreatModel.parse(threat)
        eps_list = parse_eps_list(eps) if eps else [parsed.eps]
        norm = parsed.norm
    else:
        norm = Norm.parse(threat)
        if not eps:
            raise ValueError("give --eps (e.g. --eps 0,0.1,0.3) or --threat NORM:EPS")
        eps_list = parse_eps_list(eps)
    for value in eps_list:
        ThreatModel(norm, value)  # validates each epsilon for the norm
    return norm.value, eps_list


def _run_evaluation(
    suite: str,
    attack_params: dict[str, Any],
    model: str | None,
    model_def: str | None,
    weights: str | None,
    dataset: str,
    threat: str,
    eps: str | None,
    n: int,
    targeted: bool,
    target_policy: str,
    batch_size: int,
    out_dir: str | None,
    resume: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.pipeline.runner import EvalCell, run_cells

    if not model and not model_def:
        raise ValueError("give --model NAME|PATH, or --model-def file.py:factory --weights FILE")
    if weights and not model_def:
        raise ValueError(
            "--weights is only used with --model-def file.py:factory (a --model checkpoint brings its own weights)"
        )
    resolve_device(device)
    norm, eps_list = _threat_and_eps(threat, eps)
    label = model or model_def or ""
    if targeted and target_policy == "all":
        _target_matrix(
            suite,
            attack_params,
            label,
            model_def,
            weights,
            dataset,
            norm,
            eps_list,
            n,
            seed,
            batch_size,
            out_dir,
            resume,
            data_dir,
            store,
            device,
        )
        return
    cell = EvalCell(
        model=label,
        dataset=dataset,
        norm=norm,
        eps=eps_list,
        suite=suite,
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
    run = run_cells([cell], out_dir, resume=resume, progress=progress)
    summary = run.summary()
    show_summary(summary)
    if model_def and not weights:  # after the run, so that an input error stays the one line it is
        click.secho(
            "Warning: no --weights: the factory's model was evaluated as it builds it (untrained unless it "
            "loads its own weights)",
            fg="yellow",
            err=True,
        )
    out.print(f"results in {run.dir}")
    if suite == "standard" and model and not model_def and not targeted:
        from robustbench_cnn.core.errors import CheckpointError
        from robustbench_cnn.reporting.tradeoff import record_suite_accuracy

        try:
            recorded = record_suite_accuracy(model, summary, store)
        except CheckpointError:  # a model that is not a store checkpoint (e.g. a RobustBench name)
            recorded = {}
        if recorded:
            out.print(
                "recorded the standard-suite robust accuracy in the model card (rbc tradeoff): "
                + ", ".join(f"{k} {v:.4f}" for k, v in recorded.items())
            )


def show_summary(summary: Any) -> None:
    """Print a run's summary as a rich table and its validity flags as warnings (stderr)."""
    from robustbench_cnn.evaluation.flags import EXPLANATIONS

    cols = [
        "model",
        "attack",
        "norm",
        "eps",
        "targeted",
        "clean_acc",
        "robust_acc",
        "success_rate",
        "mean_norm",
        "mean_queries",
        "flags",
    ]
    rows = summary[cols].to_dict("records") if len(summary) else []
    for row in rows:
        row["eps"] = f"{row['eps']:g}"
    out.print(_table("summary", rows, cols))
    codes = sorted({c for f in summary["flags"].dropna() for c in str(f).split(";") if c})
    for code in codes:
        click.secho(f"Warning [{code}]: {EXPLANATIONS.get(code, code)}", fg="yellow", err=True)


def _target_matrix(
    attack: str,
    attack_params: dict[str, Any],
    label: str,
    model_def: str | None,
    weights: str | None,
    dataset: str,
    norm: str,
    eps_list: list[float],
    n: int,
    seed: int,
    batch_size: int,
    out_dir: str | None,
    resume: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
) -> None:
    """``--targeted --target-policy all``: the true x target success matrix, written to the run folder."""
    from dataclasses import asdict

    from robustbench_cnn.attacks import ATTACKS, get_attack
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.errors import RbcError
    from robustbench_cnn.evaluation.target_matrix import (
        check_run_folder,
        target_matrix_table,
        wide_rows,
        write_target_matrix,
    )
    from robustbench_cnn.pipeline.runner import EvalCell, prepare_cell
    from robustbench_cnn.tables.results import run_folder

    if attack not in ATTACKS:
        raise RbcError(
            f"--target-policy all makes a true x target matrix for one attack, not the suite "
            f"{attack!r}: use rbc attack -a NAME --targeted --target-policy all"
        )
    run_dir = run_folder(out_dir, resume, "targets")
    atk = get_attack(attack, **attack_params)
    check_run_folder(run_dir, resume)
    dev = resolve_device(device)
    cell = EvalCell(
        model=label,
        dataset=dataset,
        norm=norm,
        eps=eps_list,
        suite=attack,
        attack_params=attack_params,
        n=n,
        targeted=True,
        target_policy="all",
        seed=seed,
        batch_size=batch_size,
        device=device,
        data_dir=data_dir,
        store=store,
        model_def=model_def,
        weights=weights,
    )
    net, meta, split = prepare_cell(cell, dev)  # the normal path: store checkpoint or --model-def/--weights
    labels = list(split.info.classes)
    table_meta = {
        "run_id": run_dir.name,
        "model": meta["model"],
        "checkpoint_sha256": meta["checkpoint_sha256"],
        "dataset": dataset,
    }
    table = target_matrix_table(
        net, split.x.to(dev), split.y.to(dev), norm, eps_list, atk, labels, table_meta, seed=seed, batch_size=batch_size
    )
    config = {"argv": sys.argv, "command": "target-matrix", "cells": [asdict(cell)], "device": str(dev)}
    path = write_target_matrix(run_dir, table, config)
    for eps in eps_list:
        out.print(
            _table(
                f"targeted success, true class x target class ({atk.name}, {norm}:{eps:g})",
                wide_rows(table, float(eps)),
            )
        )
    out.print(f"results in {path}")


@main.command()
@click.option("--attack", "-a", default="pgd", show_default=True, help="Registered attack (see --list).")
@click.option("--param", "-p", multiple=True, help="Attack parameter KEY=VALUE (e.g. steps=100).")
@eval_options
def attack(attack: str, param: tuple[str, ...], **kwargs: Any) -> None:
    """Run one attack over a list of epsilons (a robustness curve) and write the results tables."""
    from robustbench_cnn.attacks import ATTACKS

    ATTACKS.get(attack)
    params = _parse_kv(param, "--param")
    if params:
        from robustbench_cnn.attacks import get_attack

        get_attack(attack, **params)  # unknown parameters fail before any work
    _run_evaluation(
        attack,
        params,
        kwargs.pop("model"),
        kwargs.pop("model_def"),
        kwargs.pop("weights"),
        out_dir=kwargs.pop("out"),
        **kwargs,
    )


@main.command()
@click.option(
    "--suite",
    "-s",
    default="standard",
    show_default=True,
    help="quick | standard (AutoAttack standard + PGD) | plus, or comma-separated attack names.",
)
@eval_options
def evaluate(suite: str, **kwargs: Any) -> None:
    """Worst case per sample over a cascade of attacks, for each epsilon."""
    from robustbench_cnn.evaluation.engine import check_attack_names

    check_attack_names(suite)  # unknown names suggest suites and attacks (-s quik -> quick)
    _run_evaluation(
        suite,
        {},
        kwargs.pop("model"),
        kwargs.pop("model_def"),
        kwargs.pop("weights"),
        out_dir=kwargs.pop("out"),
        **kwargs,
    )


@main.group("attacks")
def attacks_group() -> None:
    """Registered attacks."""


@attacks_group.command("list")
def attacks_list() -> None:
    """Show every registered attack: kind, norms, targeted support, defaults."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.evaluation.engine import SUITES

    rows = [
        {
            "attack": name,
            "kind": cls.kind,
            "norms": ",".join(n.value for n in cls.norms),
            "targeted": cls.supports_targeted,
            "defaults": json.dumps(cls.defaults, default=str),
        }
        for name, cls in ATTACKS.items()
    ]
    out.print(_table("attacks", rows))
    out.print(_table("suites", [{"suite": k, "attacks": " -> ".join(a for a, _ in v)} for k, v in SUITES.items()]))


# --- benchmark ------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--suite",
    "-s",
    "suite_name",
    default="default",
    show_default=True,
    help="A built-in suite (default, ci, mnist, cifar10) or a path to a suite .toml file.",
)
@click.option("--out", "-o", "out_dir", default=None, help="Run folder (default results/<suite>-<timestamp>).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Join an existing Ray cluster (default: start a local one).")
@click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write leaderboard.md/.html.")
@_compose(
    data_dir_option,
    store_option,
    device_option,
    click.option("--seed", type=int, default=None, help="Random seed (default: the suite's seed)."),
    progress_option,
)
def benchmark(
    suite_name: str,
    out_dir: str | None,
    executor: str,
    ray_address: str | None,
    resume: bool,
    report: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int | None,
    progress: bool,
) -> None:
    """Train what is missing, run the white-box, proxy and transfer attacks, write tables and report."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.pipeline.benchmark import run_benchmark
    from robustbench_cnn.pipeline.plan import load_suite

    resolve_device(device)
    suite = load_suite(suite_name)
    if seed is not None:  # --seed 0 overrides a suite's non-zero seed too
        suite.seed = seed
    result = run_benchmark(
        suite,
        out_dir,
        resume=resume,
        executor=executor,
        ray_address=ray_address,
        store=store,
        data_dir=data_dir,
        device=device,
        progress=progress,
        report=report,
    )
    summary = result.summary
    if len(summary):
        largest = summary[(summary["attack"].isin(["worst-case"])) | (summary["suite"] == summary["attack"])]
        show_summary(largest if len(largest) else summary)
    out.print(
        f"benchmark {suite.name}: {len(result.trained)} model(s) trained, {len(summary)} rows, "
        f"{result.seconds:.1f} s; results in {result.run_dir}"
    )
    if result.report:
        out.print(f"report: {result.report[0]} and {result.report[1]}")


# --- commands defined beside the library code they call ------------------------------------------------
from robustbench_cnn.commands.report import regress_command, report_command  # noqa: E402

main.add_command(report_command)  # rbc report
main.add_command(regress_command)  # rbc regress

from robustbench_cnn.commands import blackbox as cli_blackbox  # noqa: E402
from robustbench_cnn.commands import defend as cli_defend  # noqa: E402,F401  (registers rbc defend and rbc tradeoff)

main.add_command(cli_blackbox.proxy_group)  # rbc proxy train
main.add_command(cli_blackbox.transfer_command)  # rbc transfer
main.add_command(cli_blackbox.transfer_matrix_command)  # rbc transfer-matrix


if __name__ == "__main__":  # pragma: no cover
    main()
