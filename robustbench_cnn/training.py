"""One training loop for every recipe: standard training here, adversarial recipes in ``defenses``.

A recipe only says how to compute the loss of a batch (``Recipe.loss``); the loop owns the device, the
optimizer and learning-rate schedule, mixed precision, seeding, progress and per-epoch callbacks.
The loop indexes pre-loaded tensors (no DataLoader workers), so its overhead over a plain PyTorch loop
is one index and one copy per batch (see ``benchmarks/train_throughput.py``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.core.devices import autocast_dtype, resolve_device, seed_everything
from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.models import head_module

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of the loop. ``lr`` is the peak learning rate of the schedule."""

    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # None: 3e-3 for adam, 0.05 for sgd
    optimizer: str = "adam"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "onecycle"  # triangular one-cycle, as in Wong et al. 2020
    augment: bool = False
    amp: bool = False
    channels_last: bool = False
    deterministic: bool = False
    device: str = "auto"
    seed: int = 0
    freeze: str | None = None  # "features": train only the classifier head
    normalize: bool = True  # False: the net sees raw [0, 1] pixels (no dataset mean/std), as the MNIST papers' nets

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"invalid epochs {self.epochs}: must be >= 1")
        if self.batch_size <= 0:
            raise ValueError(f"invalid batch size {self.batch_size}: must be >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"invalid optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"invalid schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.freeze not in (None, "features"):
            raise ValueError(f"invalid freeze {self.freeze!r}: only 'features' is supported")
        if self.lr is None:
            self.lr = 3e-3 if self.optimizer == "adam" else 0.05
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"invalid learning rate {self.lr}: must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> TrainConfig:
        """Defaults tuned per dataset (see ``DATASET_DEFAULTS``), updated by the non-None ``overrides``."""
        base = dict(DATASET_DEFAULTS.get(dataset.split(":")[0], {"epochs": 10}))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


#: Training defaults by dataset: digits is tiny (1,347 training images), so small batches and more epochs.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 30, "batch_size": 32, "optimizer": "sgd", "lr": 0.05},
    "mnist": {"epochs": 5, "batch_size": 128, "optimizer": "adam", "lr": 3e-3},
    "fashion-mnist": {"epochs": 10, "batch_size": 128, "optimizer": "adam", "lr": 3e-3},
    "cifar10": {"epochs": 30, "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "augment": True},
    "imagefolder": {"epochs": 30, "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "augment": True},
}


class Recipe(Protocol):
    """How one batch's training loss is computed. Defenses implement this (see ``defenses``)."""

    name: str

    def params(self) -> dict[str, Any]: ...

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor: ...


@dataclass
class StepContext:
    """What a recipe may need to know about where the loop is."""

    epoch: int
    step: int
    steps_per_epoch: int
    lr: float
    generator: torch.Generator
    autocast: Callable[[], contextlib.AbstractContextManager]
    #: the batch's rows of the training set (``fit``'s ``x``), for recipes that keep a state per training point
    indices: torch.Tensor | None = None
    #: the training set's size
    train_size: int | None = None


class StandardRecipe:
    """Standard empirical risk minimisation: cross-entropy on clean inputs."""

    name = "standard"
    last_logits: torch.Tensor | None = None  # read by the loop for the training accuracy

    def params(self) -> dict[str, Any]:
        return {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        with ctx.autocast():
            logits = model(x)
        self.last_logits = logits.detach()
        return F.cross_entropy(logits.float(), y)


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_accuracy: float
    seconds: float
    images: int
    lr: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


EpochCallback = Callable[[EpochStats, nn.Module], None]


@dataclass
class TrainResult:
    epochs: list[EpochStats]
    seconds: float
    device: str


def lr_at(config: TrainConfig, progress: float) -> float:
    """Learning rate at a fraction ``progress`` in [0, 1] of training."""
    peak = float(config.lr)  # type: ignore[arg-type]
    if config.schedule == "constant":
        return peak
    if config.schedule == "cosine":
        return 0.5 * peak * (1 + math.cos(math.pi * progress))
    # one-cycle (triangular): 0 -> peak over the first 40%, then back to 0
    return peak * (progress / 0.4 if progress < 0.4 else max(0.0, (1 - progress) / 0.6))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, flip: bool) -> torch.Tensor:
    """Per-sample random translation by up to size/8 pixels (zero padding) and optional horizontal flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        out[mask] = out[mask].flip(-1)
    return out


def freeze_features(model: nn.Module) -> list[nn.Parameter]:
    """Freeze everything but the classifier head; returns the parameters left trainable."""
    _, _, head = head_module(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    return list(head.parameters())


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=float(config.lr), momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=float(config.lr), weight_decay=config.weight_decay)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    recipe: Recipe | None = None,
    callbacks: list[EpochCallback] | None = None,
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place on images ``x`` in [0, 1] and labels ``y`` with ``recipe`` (default CE)."""
    recipe = recipe or StandardRecipe()
    device = resolve_device(config.device)
    generator = seed_everything(config.seed, config.deterministic)
    model.to(device)
    if config.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    params = (
        freeze_features(model) if config.freeze == "features" else [p for p in model.parameters() if p.requires_grad]
    )
    optimizer = make_optimizer(params, config)
    amp_dtype = autocast_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None

    def autocast() -> contextlib.AbstractContextManager:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    n = int(y.numel())
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    flip = x.shape[1] == 3
    history: list[EpochStats] = []
    start = time.perf_counter()
    from robustbench_cnn.core.progress import make_progress

    with make_progress(enabled=progress) as bar:
        task = bar.add_task(description, total=total_steps)
        for epoch in range(config.epochs):
            model.train()
            if config.freeze == "features":  # frozen features: BatchNorm statistics (and dropout) stay in eval mode
                model.eval()
                head_module(model)[2].train()
            order = torch.randperm(n, generator=generator)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            lr = float(config.lr)  # type: ignore[arg-type]
            for step in range(steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                xb, yb = x[idx], y[idx]
                if config.augment:
                    xb = random_crop_flip(xb, generator, flip)
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                if config.channels_last and device.type == "cuda":
                    xb = xb.contiguous(memory_format=torch.channels_last)
                global_step = epoch * steps_per_epoch + step
                lr = lr_at(config, global_step / total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                ctx = StepContext(epoch, step, steps_per_epoch, lr, generator, autocast, idx, n)
                loss = recipe.loss(model, xb, yb, ctx)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                loss_sum += loss.detach() * yb.numel()
                last_logits = getattr(recipe, "last_logits", None)
                if last_logits is not None:
                    correct += (last_logits.argmax(1) == yb).sum()
                bar.advance(task)
            seconds = time.perf_counter() - t0
            train_acc = float(correct) / n if getattr(recipe, "last_logits", None) is not None else float("nan")
            stats = EpochStats(epoch + 1, float(loss_sum) / n, train_acc, seconds, n, lr)
            for callback in callbacks or []:
                callback(stats, model)
            history.append(stats)
            bar.update(task, description=f"{description} epoch {epoch + 1}/{config.epochs} loss {stats.loss:.3f}")
    model.eval()
    return TrainResult(history, time.perf_counter() - start, str(device))


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 512, device: str | torch.device | None = None
) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode (mode restored), batched, returned on the CPU."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        outs = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    if not outs:
        raise RbcError("no images to evaluate")
    return torch.cat(outs)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, device: str | torch.device | None = None
) -> float:
    """Top-1 clean accuracy of ``model`` on ``x``, ``y``."""
    return float((predict(model, x, batch_size, device).argmax(1) == y.cpu()).float().mean())
