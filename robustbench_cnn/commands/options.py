"""Options shared by the commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from robustbench_cnn.commands.errors import parse_key_values


def compose(*decorators: Callable) -> Callable:
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
common_options = compose(data_dir_option, store_option, device_option, seed_option, progress_option)


def parse_kv(pairs: tuple[str, ...], option: str = "--arch-arg") -> dict[str, Any]:
    return parse_key_values(pairs, option)


def train_options(fn: Callable) -> Callable:
    """Options shared by `rbc train` and `rbc defend` (one training loop for both)."""
    return compose(
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


def eval_options(fn: Callable) -> Callable:
    """Options shared by `rbc attack` and `rbc evaluate`."""
    return compose(
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
