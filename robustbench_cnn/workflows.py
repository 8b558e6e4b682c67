"""High-level library calls that the CLI (and the Python API) delegate to: train-and-save, load-for-data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.devices import resolve_device, seed_everything
from robustbench_cnn.core.errors import CheckpointError
from robustbench_cnn.data import Split, load_split
from robustbench_cnn.models import NormalizedModel, build_for_dataset, head_module
from robustbench_cnn.store import (
    ModelCard,
    check_compatible,
    checkpoint_name,
    git_sha,
    load_checkpoint,
    package_versions,
    save_checkpoint,
)
from robustbench_cnn.training import EpochCallback, Recipe, TrainConfig, TrainResult, accuracy, fit


@dataclass
class TrainedModel:
    model: NormalizedModel
    card: ModelCard
    folder: Path
    result: TrainResult
    test_accuracy: float


def _fresh_or_transferred(
    arch: str,
    train: Split,
    init_from: str | None,
    store: str | os.PathLike | None,
    arch_kwargs: dict[str, Any],
    normalize: bool = True,
) -> tuple[NormalizedModel, str, dict[str, Any]]:
    info = train.info
    if not init_from:
        model = build_for_dataset(arch, info, normalize=normalize, **arch_kwargs)
        return model, arch, arch_kwargs
    source, source_card = load_checkpoint(init_from, store)
    check_compatible(source_card, info.channels, info.size, info.name)
    parent, attr, head = head_module(source)
    if head.out_features != info.num_classes:
        setattr(parent, attr, nn.Linear(head.in_features, info.num_classes, bias=head.bias is not None))
    return source, source_card.arch, dict(source_card.arch_kwargs)


def train_model(
    arch: str,
    dataset: str,
    config: TrainConfig,
    *,
    recipe: Recipe | None = None,
    store: str | os.PathLike | None = None,
    tag: str | None = None,
    subset: int | None = None,
    data_dir: str | os.PathLike | None = None,
    init_from: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    threat: str | None = None,
    callbacks: list[EpochCallback] | None = None,
    eval_n: int | None = None,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> TrainedModel:
    """Train ``arch`` on ``dataset`` with ``recipe`` (standard CE by default) and save it to the store.

    The checkpoint is named ``<dataset>/<arch>-<recipe>[-<tag>]``; its card records the architecture and its
    arguments, data, normalization, recipe and hyper-parameters, seed, clean test accuracy and versions.
    """
    arch_kwargs = dict(arch_kwargs or {})
    seed_everything(config.seed, config.deterministic)  # model initialisation is part of the seeded run
    train = load_split(dataset, "train", n=subset, seed=config.seed, data_dir=data_dir)
    test = load_split(dataset, "test", n=eval_n, data_dir=data_dir)
    model, arch, arch_kwargs = _fresh_or_transferred(arch, train, init_from, store, arch_kwargs, config.normalize)
    recipe_name = getattr(recipe, "name", "standard")
    name = checkpoint_name(train.info.slug, arch, recipe_name, tag)
    result = fit(
        model, train.x, train.y, config, recipe=recipe, callbacks=callbacks, progress=progress, description=f"{name}"
    )
    device = resolve_device(config.device)
    test_acc = accuracy(model, test.x, test.y, device=device)
    hyper = {k: v for k, v in config.to_dict().items() if k not in ("device", "seed", "epochs")}
    hyper.update(getattr(recipe, "params", lambda: {})())
    info = train.info
    card = ModelCard(
        name=name,
        arch=arch,
        arch_kwargs=arch_kwargs,
        dataset=info.name,
        input_shape=list(info.input_shape),
        num_classes=info.num_classes,
        classes=list(info.classes),
        mean=[float(v) for v in model.mean.flatten().tolist()],
        std=[float(v) for v in model.std.flatten().tolist()],
        recipe=recipe_name,
        hyperparameters=hyper,
        epochs=config.epochs,
        seed=config.seed,
        clean_accuracy=test_acc,
        train_time_s=round(result.seconds, 3),
        threat=threat,
        versions=package_versions(),
        git_sha=git_sha(),
        extra={
            "train_size": len(train),
            "test_size": len(test),
            "device": result.device,
            "init_from": init_from,
            **(extra or {}),
        },
    )
    folder = save_checkpoint(model.cpu(), card, store)
    return TrainedModel(model.eval(), card, folder, result, test_acc)


def load_model(
    name_or_path: str | os.PathLike, device: str | torch.device = "auto", store: str | os.PathLike | None = None
) -> NormalizedModel:
    """Load a trained checkpoint by store name (``digits/lenet5-standard``) or path, ready for [0,1] input.

    Mirrors ``robustbench.utils.load_model``: weights are read with safetensors and checked against the
    card's sha256; nothing is unpickled.
    """
    model, _ = load_checkpoint(name_or_path, store, resolve_device(device) if isinstance(device, str) else device)
    return model


def load_for_dataset(
    name_or_path: str,
    dataset: str,
    device: torch.device,
    store: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
) -> tuple[NormalizedModel, ModelCard]:
    """Load a checkpoint and refuse it if its input channels or size do not fit ``dataset``."""
    from robustbench_cnn.data import dataset_info

    model, card = load_checkpoint(name_or_path, store, device)
    info = dataset_info(dataset, data_dir)
    check_compatible(card, info.channels, info.size, dataset)
    if card.num_classes != info.num_classes and info.num_classes:
        raise CheckpointError(
            f"checkpoint {card.name!r} predicts {card.num_classes} classes, dataset {dataset!r} has {info.num_classes}"
        )
    return model, card
