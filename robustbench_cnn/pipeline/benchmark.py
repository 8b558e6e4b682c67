"""``rbc benchmark``: train what is missing, evaluate white-box (untargeted and targeted), attack through a
proxy (substitute) model, transfer between the models, and write the tables and the leaderboard report.

Every step is resumable: trained models live in the model store; white-box and proxy results are cells of the
run folder (skipped when present); the transfer matrix is one file written atomically.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.progress import console
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel, parse_eps
from robustbench_cnn.pipeline.plan import ModelSpec, Suite
from robustbench_cnn.pipeline.runner import EvalCell, pin_weights, run_cells
from robustbench_cnn.tables.results import (
    SCHEMA_VERSION,
    SUMMARY_SCHEMA,
    RunStore,
    atomic_write_parquet,
    run_folder,
    typed_frame,
)


@dataclass
class BenchmarkResult:
    run_dir: Path
    summary: pd.DataFrame
    trained: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: tuple[Path, Path] | None = None


def ensure_model(
    spec: ModelSpec,
    dataset: str,
    suite: Suite,
    *,
    store: str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    device: str,
    progress: bool,
) -> tuple[str, bool]:
    """The checkpoint name of ``spec`` on ``dataset``, training it first if the store lacks it."""
    from robustbench_cnn.core.errors import CheckpointError
    from robustbench_cnn.data import dataset_info
    from robustbench_cnn.store import other_threat, resolve_checkpoint
    from robustbench_cnn.training import TrainConfig

    name = spec.checkpoint_name(dataset_info(dataset, data_dir).slug)
    try:
        folder = resolve_checkpoint(name, store)
    except CheckpointError:
        if spec.checkpoint:
            raise
    else:
        defended = spec.recipe != "standard" and spec.threat and not spec.checkpoint
        stored = other_threat(folder, spec.threat) if defended else None
        if stored is not None:  # else another model's robustness would be reported under this spec
            raise RbcError(
                f"checkpoint {name!r} in the store was trained at {stored}, the suite asks for "
                f"{spec.threat}: give the model a tag in the suite, or use another store"
            )
        return name, False
    config = TrainConfig.for_dataset(dataset, epochs=spec.epochs, device=device, seed=suite.seed, **spec.train)
    if spec.recipe == "standard":
        from robustbench_cnn.workflows import train_model

        train_model(spec.arch, dataset, config, store=store, tag=spec.tag, data_dir=data_dir, progress=progress)
    else:
        from robustbench_cnn.defenses import defend

        defend(
            spec.recipe,
            spec.arch,
            dataset,
            spec.threat,
            config,
            store=store,
            tag=spec.tag,
            data_dir=data_dir,
            progress=progress,
            **spec.params,
        )
    return name, True


def transfer_rows(results: list[AttackResult], meta: dict[str, Any], suite_label: str) -> list[dict[str, Any]]:
    """Summary rows (the results schema) for black-box results, one per epsilon."""
    rows = []
    for res in results:
        hit_norms = res.perturbation_norm[res.success].float()
        rows.append(
            {
                **meta,
                "suite": suite_label,
                "attack": res.attack,
                "attack_kind": "transfer",
                "attack_params": json.dumps(res.params, sort_keys=True, default=str),
                "targeted": res.targeted,
                "target_policy": "",
                "norm": res.threat.norm.value,
                "eps": res.threat.eps,
                "clean_acc": res.clean_accuracy,
                "robust_acc": res.robust_accuracy,
                "success_rate": res.success_rate,
                "n": res.n,
                "mean_norm": float(hit_norms.mean()) if hit_norms.numel() else float("nan"),
                "median_norm": float(hit_norms.median()) if hit_norms.numel() else float("nan"),
                "mean_queries": float(res.queries.float().mean()),
                "total_queries": int(res.queries.sum()),
                "elapsed_s": res.elapsed_s,
                "flags": "",
            }
        )
    return rows


def run_benchmark(
    suite: Suite,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    store: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    report: bool = True,
) -> BenchmarkResult:
    """Run a whole suite into ``out`` (default ``results/<run-id>``) and write the report."""
    start = time.perf_counter()
    run_dir = run_folder(out, resume, suite.name)
    run = RunStore(run_dir)
    run.check_fresh(resume)
    trained: list[str] = []
    cells: list[EvalCell] = []
    names_by_dataset: dict[str, dict[str, str]] = {}
    for dataset in suite.datasets:
        names_by_dataset[dataset] = {}
        for spec in suite.models:
            name, was_trained = ensure_model(
                spec, dataset, suite, store=store, data_dir=data_dir, device=device, progress=progress
            )
            if was_trained:
                trained.append(name)
            names_by_dataset[dataset][name.split("/", 1)[1]] = name
            common = dict(
                model=name,
                dataset=dataset,
                norm=suite.norm,
                n=suite.n,
                seed=suite.seed,
                batch_size=suite.batch_size,
                device=device,
                data_dir=str(data_dir) if data_dir else None,
                store=str(store) if store else None,
            )
            cells.append(EvalCell(eps=suite.eps, suite=suite.attacks, **common))
            if suite.targeted:
                cells.append(
                    EvalCell(
                        eps=[parse_eps(e) for e in suite.targeted.get("eps", suite.eps)],
                        suite=suite.targeted.get("attack", "pgd"),
                        targeted=True,
                        target_policy=suite.targeted.get("policy", "random"),
                        **common,
                    )
                )
    console.print(f"[bold]benchmark {suite.name}[/]: {len(trained)} model(s) trained, {len(cells)} white-box cells")
    proxy_ids = {
        dataset: _proxy_cell_id(suite, dataset, names_by_dataset[dataset], store)
        for dataset in suite.datasets
        if suite.proxy
    }
    cells = [pin_weights(c) for c in cells]
    planned = [c.id for c in cells] + list(proxy_ids.values())
    run_cells(
        cells,
        run_dir,
        resume=True,
        executor=executor,
        ray_address=ray_address,
        progress=progress,
        config={"suite": suite.to_dict()},
        other_cells=proxy_ids.values(),
    )
    for dataset in suite.datasets:
        if suite.proxy:
            _proxy_cells(
                suite,
                dataset,
                names_by_dataset[dataset],
                run,
                proxy_ids[dataset],
                store=store,
                data_dir=data_dir,
                device=device,
                progress=progress,
            )
        if suite.transfer and len(names_by_dataset[dataset]) > 1:
            _transfer_matrix(
                suite, dataset, names_by_dataset[dataset], run, store=store, data_dir=data_dir, device=device
            )
    run.finalize(planned)
    _write_examples(suite, run_dir, names_by_dataset, store=store, data_dir=data_dir, device=device)
    paths = None
    if report:
        from robustbench_cnn.reporting.report import write_report

        paths = write_report(
            run_dir, store=store, eps={suite.norm: suite.report_eps} if suite.report_eps is not None else None
        )
    return BenchmarkResult(run_dir, run.summary(), trained, time.perf_counter() - start, paths)


def _load(name: str, dataset: str, store: Any, data_dir: Any, device: str) -> tuple[torch.nn.Module, Any]:
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.workflows import load_for_dataset

    return load_for_dataset(name, dataset, resolve_device(device), store, data_dir)


def _proxy_plan(suite: Suite, names: dict[str, str]) -> tuple[str, dict[str, Any], str, list[float]]:
    """(target key, substitute-training options, transfer attack, epsilons) of the suite's ``[proxy]``."""
    proxy = dict(suite.proxy or {})
    target_key = proxy.pop("target", next(iter(names)))
    if target_key not in names:
        raise ValueError(f"proxy target {target_key!r} is not a model of the suite: use one of {', '.join(names)}")
    transfer = suite.transfer or {"attack": "fgsm", "eps": max(suite.eps)}
    return target_key, proxy, transfer.get("attack", "fgsm"), [e for e in suite.eps if e > 0]


def _weights_of(names: dict[str, str], store: Any) -> dict[str, str]:
    """Checkpoint name -> weights sha256 of the models a cell touches (part of its key: retrained = new cell)."""
    from robustbench_cnn.store import weights_sha256

    return {name: weights_sha256(name, store) for name in sorted(names.values())}


def _proxy_cell_id(suite: Suite, dataset: str, names: dict[str, str], store: Any) -> str:
    """The proxy cell's id: the request plus the weights of every model it touches."""
    from robustbench_cnn.tables.results import cell_id

    target_key, proxy, attack, eps_list = _proxy_plan(suite, names)
    weights = _weights_of(names, store)
    key = dict(
        kind="proxy",
        dataset=dataset,
        target=names[target_key],
        proxy=proxy,
        attack=attack,
        eps=eps_list,
        n=suite.n,
        seed=suite.seed,
        models=sorted(names.values()),
        weights=weights,
    )
    return cell_id(model=f"proxy-{target_key}", suite="proxy", norm=suite.norm, **key)


def _proxy_cells(
    suite: Suite,
    dataset: str,
    names: dict[str, str],
    run: RunStore,
    cid: str,
    *,
    store: Any,
    data_dir: Any,
    device: str,
    progress: bool,
) -> None:
    """Train a substitute of the proxy target from oracle labels, then transfer from it to every model."""
    import datetime as _dt

    from robustbench_cnn.attacks.blackbox.substitute import eval_indices, train_substitute
    from robustbench_cnn.attacks.blackbox.transfer import transfer_attack
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.data import load_split
    from robustbench_cnn.store import git_sha, package_versions

    if run.has_cell(cid):
        return
    target_key, proxy, attack, eps_list = _proxy_plan(suite, names)
    target, _ = _load(names[target_key], dataset, store, data_dir, device)
    seed_size = int(proxy.get("seed_size", 150))
    sub = train_substitute(
        target,
        dataset,
        proxy.pop("substitute", "lenet5"),
        seed=suite.seed,
        device=device,
        data_dir=data_dir,
        store=store,
        target_name=names[target_key],
        progress=progress,
        **proxy,
    )
    test = load_split(dataset, "test", data_dir=data_dir)
    n_eval = min(suite.n or len(test), len(test) - seed_size)  # never evaluate on the attacker's seed set
    idx = torch.from_numpy(eval_indices(len(test), n_eval, seed_size))
    x, y = test.x[idx], test.y[idx]
    rows = []
    for _key_name, name in names.items():
        model, card = _load(name, dataset, store, data_dir, device)
        results = transfer_attack(
            sub.model,
            model,
            x,
            y,
            Norm.parse(suite.norm),
            attack,
            eps_list,
            seed=suite.seed,
            source_names=["proxy"],
            target_name=name,
        )
        meta = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run.run_id,
            "cell_id": cid,
            "model": name,
            "checkpoint_sha256": card.weights_sha256,
            "arch": card.arch,
            "defense": card.recipe if card.recipe != "standard" else "",
            "dataset": dataset,
            "split": "test",
            "seed": suite.seed,
            "device": str(resolve_device(device)),
            "git_sha": git_sha() or "",
            "versions": json.dumps(package_versions(), sort_keys=True),
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        rows.extend(transfer_rows(results, meta, f"proxy:{target_key}"))
    run.write_cell(cid, typed_frame(rows, SUMMARY_SCHEMA))


def _transfer_matrix(
    suite: Suite, dataset: str, names: dict[str, str], run: RunStore, *, store: Any, data_dir: Any, device: str
) -> None:
    from robustbench_cnn.attacks.blackbox.matrix import transfer_matrix
    from robustbench_cnn.data import load_split
    from robustbench_cnn.tables.results import cell_id

    path = run.dir / "transfer_matrix.parquet"
    transfer = suite.transfer or {}
    threat = ThreatModel(Norm.parse(suite.norm), parse_eps(transfer.get("eps", max(suite.eps))))
    attack = transfer.get("attack", "fgsm")
    weights = _weights_of(names, store)
    key = cell_id(
        model="transfer", suite=attack, norm=str(threat), dataset=dataset, n=suite.n, seed=suite.seed, weights=weights
    )
    # one file for every dataset, one block of rows per dataset keyed by the request (resumable, never stale)
    kept = pd.read_parquet(path) if path.exists() else None
    if kept is not None and "matrix_key" in kept.columns:
        if key in set(kept["matrix_key"]):
            return
        kept = kept[kept["dataset"] != dataset]
    else:
        kept = None
    models = {name: _load(name, dataset, store, data_dir, device)[0] for name in names.values()}
    split = load_split(dataset, "test", n=suite.n, data_dir=data_dir)
    table = transfer_matrix(models, split.x, split.y, threat, attack, seed=suite.seed)
    table.insert(0, "dataset", dataset)
    table["matrix_key"] = key
    atomic_write_parquet(pd.concat([kept, table], ignore_index=True) if kept is not None and len(kept) else table, path)


def _write_examples(
    suite: Suite, run_dir: Path, names_by_dataset: dict[str, dict[str, str]], *, store: Any, data_dir: Any, device: str
) -> None:
    """A few clean/adversarial pairs per model (``examples.npz``) for the report's example grid."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.evaluation.examples import write_examples

    eps = max(suite.eps)
    if (run_dir / "examples.npz").exists() or eps <= 0 or len(suite.datasets) != 1:
        return
    dataset = suite.datasets[0]
    write_examples(
        run_dir,
        list(names_by_dataset[dataset].values()),
        dataset,
        f"{suite.norm}:{eps}",
        n=4,
        seed=suite.seed,
        store=store,
        data_dir=data_dir,
        device=str(resolve_device(device)),
    )
