"""Black-box commands of ``rbc``: ``proxy train``, ``transfer`` and ``transfer-matrix``.

They only parse options and call :mod:`robustbench_cnn.attacks.blackbox`.

Tables are printed with rich and written as parquet to ``--out`` (default ``results/<run-id>/``),
with ``run.json`` recording the command's options.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand, RbcGroup
from robustbench_cnn.commands.options import common_options, param_option

__all__ = ["proxy_group", "transfer_command", "transfer_matrix_command"]


# --- helpers (no cli import needed) ----------------------------------------------------------------


def _run_folder(out: str | None, kind: str) -> tuple[Path, str]:
    """The output folder (``--out``, else ``results/<run-id>/``) and the run id (the folder's name)."""
    from robustbench_cnn.tables.results import new_run_id

    folder = Path(out) if out else Path("results") / new_run_id(kind)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, folder.name


def _write_run_json(folder: Path, command: str, options: dict[str, Any]) -> None:
    import sys

    from robustbench_cnn.store import git_sha, package_versions
    from robustbench_cnn.tables.results import SCHEMA_VERSION, RunStore

    RunStore(folder).write_run_json(
        {
            "argv": sys.argv,
            "command": command,
            **options,
            "schema_version": SCHEMA_VERSION,
            "versions": package_versions(),
            "git_sha": git_sha(),
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )


def _parse_attack_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    from robustbench_cnn.commands.errors import parse_key_values

    return parse_key_values(pairs, "--attack-arg")


def _names(text: str, option: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"{option} needs at least one checkpoint name")
    return names


def _card(name: str, store: str | None):
    from robustbench_cnn.store import read_card, resolve_checkpoint

    return read_card(resolve_checkpoint(name, store))


def _disjoint_n(n: int | None, total: int, cards: list[Any], dataset: str) -> int:
    """``n`` capped so that evaluation points avoid the seed set of every substitute among ``cards``."""
    from robustbench_cnn.core.progress import console

    n_eff = total if n is None else min(n, total)
    for card in cards:
        limit = (card.extra or {}).get("eval_max_n") if card.recipe == "substitute" else None
        if limit is not None and card.dataset == dataset and n_eff > int(limit):
            console.print(
                f"[yellow]note:[/] -n reduced from {n_eff} to {limit} so that the evaluation points "
                f"are disjoint from the seed set of substitute {card.name!r}"
            )
            n_eff = int(limit)
    return n_eff


def _print_df(title: str, df: Any, columns: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = columns or [str(c) for c in df.columns]
    for col in columns:
        table.add_column(col, min_width=min(len(col), 12), overflow="fold")
    for row in df[columns].itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


# --- the commands --------------------------------------------------------

_dataset_opt = click.option(
    "--dataset",
    "-d",
    default=None,
    help="digits | mnist | fashion-mnist | cifar10 | imagefolder:PATH (default: the target's dataset).",
)
_out_opt = click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the parquet tables (default: results/<run-id>/).",
)
_attack_arg_opt = param_option("source-attack", "--attack-arg", dest="attack_arg")


@click.group("proxy", cls=RbcGroup)
def proxy_group() -> None:
    """Substitute (proxy) models of a black-box target (Papernot et al. 2017)."""


@proxy_group.command("train")
@click.option("--target", required=True, help="Target checkpoint (store name or path), queried as an oracle.")
@click.option(
    "--substitute",
    "substitute_arch",
    default="lenet5",
    show_default=True,
    help="Substitute architecture (rbc models list).",
)
@_dataset_opt
@click.option(
    "--seed-size",
    type=int,
    default=150,
    show_default=True,
    help="Seed images (the last ones of the test permutation, never evaluated on).",
)
@click.option("--rounds", type=int, default=6, show_default=True, help="Substitute training rounds.")
@click.option(
    "--lambda",
    "lam",
    type=float,
    default=0.1,
    show_default=True,
    help="Jacobian augmentation step (its sign flips every --tau rounds).",
)
@click.option("--tau", type=int, default=3, show_default=True, help="Rounds between sign flips of lambda.")
@click.option("--budget", type=int, default=6400, show_default=True, help="Oracle query budget.")
@click.option(
    "--oracle",
    "oracle_mode",
    type=click.Choice(["labels", "scores"]),
    default="labels",
    show_default=True,
    help="What the oracle returns: labels, or softmax scores (soft labels).",
)
@click.option("--epochs-per-round", type=int, default=10, show_default=True)
@click.option(
    "--reservoir", type=int, default=None, help="Reservoir sampling: augment at most this many points per round."
)
@click.option("--tag", default=None, help="Checkpoint name suffix (default: of-<target>).")
@_out_opt
@common_options
def proxy_train(
    target: str,
    substitute_arch: str,
    dataset: str | None,
    seed_size: int,
    rounds: int,
    lam: float,
    tau: int,
    budget: int,
    oracle_mode: str,
    epochs_per_round: int,
    reservoir: int | None,
    tag: str | None,
    out: str | None,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Train a substitute of TARGET from oracle labels and save it to the model store."""
    from robustbench_cnn.attacks.blackbox.substitute import train_substitute
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.models import MODELS
    from robustbench_cnn.workflows import load_for_dataset

    MODELS.get(substitute_arch)
    dev = resolve_device(device)
    dataset = dataset or _card(target, store).dataset
    model, card = load_for_dataset(target, dataset, dev, store, data_dir)
    result = train_substitute(
        model,
        dataset,
        substitute_arch,
        seed_size=seed_size,
        rounds=rounds,
        lam=lam,
        tau=tau,
        budget=budget,
        epochs_per_round=epochs_per_round,
        oracle_mode=oracle_mode,
        max_new_per_round=reservoir,
        seed=seed,
        device=str(dev),
        data_dir=data_dir,
        store=store,
        target_name=card.name,
        tag=tag,
        progress=progress,
    )
    from robustbench_cnn.tables.results import atomic_write_parquet

    folder, run_id = _run_folder(out, "proxy")
    history = result.history.assign(run_id=run_id, target=card.name, substitute=result.card.name)
    atomic_write_parquet(
        history.astype({"run_id": "string", "target": "string", "substitute": "string"}), folder / "history.parquet"
    )
    _write_run_json(
        folder,
        "proxy train",
        {
            "target": card.name,
            "substitute": substitute_arch,
            "dataset": dataset,
            "seed_size": seed_size,
            "rounds": rounds,
            "lambda": lam,
            "tau": tau,
            "budget": budget,
            "oracle": oracle_mode,
            "epochs_per_round": epochs_per_round,
            "reservoir": reservoir,
            "seed": seed,
            "device": str(dev),
        },
    )
    _print_df(f"substitute {result.card.name} of {card.name}", result.history)
    click.echo(f"queries used: {result.queries} of {budget}")
    click.echo(f"saved to {result.folder}  (use it as --source {result.card.name})")
    click.echo(f"history written to {folder / 'history.parquet'}")


@click.command("transfer", cls=RbcCommand)
@click.option(
    "--source",
    required=True,
    help="Source checkpoint(s): a substitute (rbc proxy train) or any model; NAME[,NAME] ensembles.",
)
@click.option("--target", required=True, help="Target checkpoint, queried for labels only.")
@click.option(
    "--attack",
    default="fgsm",
    show_default=True,
    help="White-box attack run on the source: fgsm | pgd | mi-fgsm | di-fgsm | di-mi-fgsm.",
)
@_attack_arg_opt
@click.option("--threat", default="linf", show_default=True, help="NORM or NORM:EPS (linf, l2).")
@click.option("--eps", "eps_text", default=None, help="Comma-separated epsilons, e.g. 0.1,0.2,0.3.")
@click.option(
    "-n",
    "n",
    type=int,
    default=1000,
    show_default=True,
    help="Test points (the first n of the seeded permutation; kept disjoint from substitute seed sets).",
)
@click.option("--targeted/--untargeted", default=False, show_default=True)
@click.option(
    "--target-policy",
    default="random",
    show_default=True,
    help="random | least-likely (from the source's logits) | next | class:K | all.",
)
@_dataset_opt
@_out_opt
@common_options
def transfer_command(
    source: str,
    target: str,
    attack: str,
    attack_arg: tuple[str, ...],
    threat: str,
    eps_text: str | None,
    n: int,
    targeted: bool,
    target_policy: str,
    dataset: str | None,
    out: str | None,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Transfer adversarial examples crafted on SOURCE to TARGET (success on target-correct points)."""
    import torch

    from robustbench_cnn.attacks.blackbox.transfer import _make_attack, transfer_attack
    from robustbench_cnn.attacks.targets import all_targets, choose_targets, parse_policy
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.types import Norm, ThreatModel, parse_eps_list
    from robustbench_cnn.data import load_split
    from robustbench_cnn.workflows import load_for_dataset

    norm_text, _, eps_part = threat.partition(":")
    norm = Norm.parse(norm_text)
    eps_list = parse_eps_list(eps_text) if eps_text else ([ThreatModel.parse(threat).eps] if eps_part else None)
    if not eps_list:
        raise ValueError(f"no epsilon: give --threat {norm.value}:EPS or --eps 0.1,0.2,0.3")
    atk = _make_attack(attack, _parse_attack_args(attack_arg))  # bad names fail before loading
    if targeted:
        parse_policy(target_policy)
    dev = resolve_device(device)
    sources = _names(source, "--source")
    dataset = dataset or _card(target, store).dataset
    target_model, target_card = load_for_dataset(target, dataset, dev, store, data_dir)
    loaded = [load_for_dataset(s, dataset, dev, store, data_dir) for s in sources]
    total = len(load_split(dataset, "test", data_dir=data_dir))
    n_eff = _disjoint_n(n, total, [c for _, c in loaded], dataset)
    data = load_split(dataset, "test", n=n_eff, data_dir=data_dir)
    x, y = data.x.to(dev), data.y.to(dev)
    source_names = [c.name for _, c in loaded]
    source_models = {c.name: m for m, c in loaded}

    runs: list[tuple[str, torch.Tensor | None]] = [("", None)]
    if targeted:
        kind, _ = parse_policy(target_policy, data.info.num_classes)
        if kind == "all":
            runs = [(f"class:{k}", torch.full_like(y, k)) for k in all_targets(data.info.num_classes)]
        else:
            from robustbench_cnn.attacks.blackbox.transfer import as_source

            src, _ = as_source(source_models)
            with torch.no_grad():
                logits = src.eval()(x) if kind == "least-likely" else None
            gen = torch.Generator().manual_seed(seed)
            runs = [(target_policy, choose_targets(target_policy, logits, y, data.info.num_classes, gen))]

    from robustbench_cnn.store import git_sha, package_versions
    from robustbench_cnn.tables.results import (
        SAMPLES_SCHEMA,
        SCHEMA_VERSION,
        SUMMARY_SCHEMA,
        atomic_write_parquet,
        cell_id,
        typed_frame,
    )

    folder, run_id = _run_folder(out, "transfer")
    meta = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "model": target_card.name,
        "checkpoint_sha256": target_card.weights_sha256,
        "arch": target_card.arch,
        "dataset": dataset,
        "split": "test",
        "defense": target_card.recipe if target_card.recipe != "standard" else "",
        "suite": "transfer",
        "attack_kind": "transfer",
        "seed": seed,
        "device": str(dev),
        "flags": "",
        "versions": json.dumps(package_versions(), sort_keys=True),
        "git_sha": git_sha() or "",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    summary, samples = [], []
    for policy, targets in runs:
        results = transfer_attack(
            source_models,
            target_model,
            x,
            y,
            norm,
            atk,
            eps_list=eps_list,
            targets=targets,
            seed=seed,
            target_name=target_card.name,
        )
        for res in results:
            cid = cell_id(
                model=target_card.name,
                suite="transfer",
                norm=norm.value,
                eps=res.threat.eps,
                sources=source_names,
                attack=res.attack,
                policy=policy,
            )
            broken = res.perturbation_norm[res.success].float()
            summary.append(
                {
                    **meta,
                    "cell_id": cid,
                    "n": res.n,
                    "attack": res.attack,
                    "attack_params": json.dumps(res.params, sort_keys=True, default=str),
                    "targeted": targets is not None,
                    "target_policy": policy,
                    "norm": norm.value,
                    "eps": res.threat.eps,
                    "clean_acc": res.clean_accuracy,
                    "robust_acc": res.robust_accuracy,
                    "success_rate": res.success_rate,
                    "mean_norm": float(broken.mean()) if broken.numel() else float("nan"),
                    "median_norm": float(broken.median()) if broken.numel() else float("nan"),
                    "mean_queries": float(res.queries.float().mean()) if res.n else 0.0,
                    "total_queries": int(res.queries.sum()),
                    "elapsed_s": res.elapsed_s,
                    "source": ",".join(source_names),
                    "attacked": int((res.queries > 0).sum()),
                }
            )
            pred_clean = torch.where(res.clean_correct, y, res.pred_adv)  # unattacked: pred_adv is clean
            for i in range(res.n):
                samples.append(
                    {
                        "run_id": run_id,
                        "cell_id": cid,
                        "model": target_card.name,
                        "dataset": dataset,
                        "attack": res.attack,
                        "norm": norm.value,
                        "eps": res.threat.eps,
                        "sample_id": int(data.index[i]),
                        "label": int(y[i]),
                        "clean_correct": bool(res.clean_correct[i]),
                        "success": bool(res.success[i]),
                        "robust": bool(res.robust[i]),
                        "perturbation_norm": float(res.perturbation_norm[i]),
                        "queries": int(res.queries[i]),
                        "pred_clean": int(pred_clean[i]),
                        "pred_adv": int(res.pred_adv[i]),
                        "target": int(res.target[i]),
                    }
                )
    extra = {"source": "string", "attacked": "Int64"}
    table = typed_frame(summary, {**SUMMARY_SCHEMA, **extra})
    atomic_write_parquet(table, folder / "summary.parquet")
    atomic_write_parquet(typed_frame(samples, SAMPLES_SCHEMA), folder / "samples.parquet")
    _write_run_json(
        folder,
        "transfer",
        {
            "source": source_names,
            "target": target_card.name,
            "attack": atk.name,
            "attack_params": atk.params,
            "threat": threat,
            "eps": eps_list,
            "n": n_eff,
            "targeted": targeted,
            "target_policy": target_policy if targeted else None,
            "dataset": dataset,
            "seed": seed,
            "device": str(dev),
        },
    )
    title = f"transfer {' + '.join(source_names)} -> {target_card.name} ({atk.name}, n={n_eff})"
    _print_df(
        title,
        table,
        [
            "target_policy",
            "norm",
            "eps",
            "clean_acc",
            "attacked",
            "success_rate",
            "robust_acc",
            "mean_norm",
            "total_queries",
        ]
        if targeted
        else ["norm", "eps", "clean_acc", "attacked", "success_rate", "robust_acc", "mean_norm", "total_queries"],
    )
    click.echo(f"tables written to {folder}")


@click.command("transfer-matrix", cls=RbcCommand)
@click.option("--models", "model_names", required=True, help="Comma-separated checkpoints (at least 2).")
@click.option("--attack", default="fgsm", show_default=True, help="White-box attack run on each source.")
@_attack_arg_opt
@click.option("--threat", required=True, help="NORM:EPS, e.g. linf:0.3.")
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Test points.")
@click.option("--dataset", "-d", default=None, help="Dataset (default: the first model's).")
@_out_opt
@common_options
def transfer_matrix_command(
    model_names: str,
    attack: str,
    attack_arg: tuple[str, ...],
    threat: str,
    n: int,
    dataset: str | None,
    out: str | None,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Success of ATTACK crafted on every model against every model (diagonal: white-box)."""
    from robustbench_cnn.attacks.blackbox.matrix import matrix_wide, transfer_matrix
    from robustbench_cnn.attacks.blackbox.transfer import _make_attack
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.types import ThreatModel
    from robustbench_cnn.data import load_split
    from robustbench_cnn.workflows import load_for_dataset

    tm = ThreatModel.parse(threat)
    atk = _make_attack(attack, _parse_attack_args(attack_arg))
    names = _names(model_names, "--models")
    if len(set(names)) != len(names):
        raise ValueError("--models lists a checkpoint twice")
    if len(names) < 2:
        raise ValueError(
            f"--models needs at least 2 checkpoints (got {len(names)}): a transfer matrix "
            f"crafts on each model and tests on the others"
        )
    dev = resolve_device(device)
    dataset = dataset or _card(names[0], store).dataset
    loaded = [load_for_dataset(name, dataset, dev, store, data_dir) for name in names]
    total = len(load_split(dataset, "test", data_dir=data_dir))
    n_eff = _disjoint_n(n, total, [c for _, c in loaded], dataset)
    data = load_split(dataset, "test", n=n_eff, data_dir=data_dir)
    models = {card.name: model for model, card in loaded}
    table = transfer_matrix(models, data.x.to(dev), data.y.to(dev), tm, atk, seed=seed)
    from robustbench_cnn.tables.results import atomic_write_parquet

    folder, run_id = _run_folder(out, "transfer-matrix")
    table = table.assign(run_id=run_id, dataset=dataset, n_points=n_eff, seed=seed).astype(
        {"run_id": "string", "dataset": "string", "n_points": "int64", "seed": "int64"}
    )
    atomic_write_parquet(table, folder / "transfer_matrix.parquet")
    _write_run_json(
        folder,
        "transfer-matrix",
        {
            "models": list(models),
            "attack": atk.name,
            "attack_params": atk.params,
            "threat": str(tm),
            "n": n_eff,
            "dataset": dataset,
            "seed": seed,
            "device": str(dev),
        },
    )
    wide = matrix_wide(table).reset_index()
    wide.columns = ["source \\ target"] + [str(c) for c in wide.columns[1:]]
    _print_df(f"transfer success rate ({atk.name}, {tm}, n={n_eff}; diagonal = white-box)", wide)
    click.echo(f"table written to {folder / 'transfer_matrix.parquet'}")
