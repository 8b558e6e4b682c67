"""``rbc attack`` (one attack over a robustness curve) and ``rbc evaluate`` (a cascade, per-sample worst case)."""

from __future__ import annotations

import sys
from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import (
    eval_options,
    parse_kv,
)
from robustbench_cnn.commands.output import out, show_summary, table


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
    matrix = target_matrix_table(
        net, split.x.to(dev), split.y.to(dev), norm, eps_list, atk, labels, table_meta, seed=seed, batch_size=batch_size
    )
    config = {"argv": sys.argv, "command": "target-matrix", "cells": [asdict(cell)], "device": str(dev)}
    path = write_target_matrix(run_dir, matrix, config)
    for eps in eps_list:
        out.print(
            table(
                f"targeted success, true class x target class ({atk.name}, {norm}:{eps:g})",
                wide_rows(matrix, float(eps)),
            )
        )
    out.print(f"results in {path}")


@click.command(cls=RbcCommand)
@click.option("--attack", "-a", default="pgd", show_default=True, help="Registered attack (rbc attacks list).")
@click.option("--param", "-p", multiple=True, help="Attack parameter KEY=VALUE (e.g. steps=100).")
@eval_options
def attack(attack: str, param: tuple[str, ...], **kwargs: Any) -> None:
    """Run one attack over a list of epsilons (a robustness curve) and write the results tables."""
    from robustbench_cnn.attacks import ATTACKS

    ATTACKS.get(attack)
    params = parse_kv(param, "--param")
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


@click.command(cls=RbcCommand)
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
