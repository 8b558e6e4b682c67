"""Options shared by the commands, defined once.

The shared options (``--threads``, ``--device``, ``--store``, ``--data-dir``, ``--out``, ``--seed``,
``--progress/--no-progress``) are accepted before and after the subcommand: :func:`root_options` puts them on the
root group, the decorators below on the commands (see :mod:`robustbench_cnn.commands.shared`). Attack, defense and
architecture parameters are spelled ``-p/--param KEY=VALUE`` everywhere (:func:`param_option`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from robustbench_cnn.commands.errors import parse_key_values
from robustbench_cnn.commands.shared import THREADS_HELP, check_threads, record_root_value


def compose(*decorators: Callable) -> Callable:
    """Apply ``decorators`` as if stacked in this order above a function (the first is the outermost)."""

    def apply(fn: Callable) -> Callable:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn

    return apply


#: The shared options as the commands spell them: declarations and click attributes, each defined once.
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "data_dir": (
        ("--data-dir",),
        {
            "type": click.Path(file_okay=False),
            "default": None,
            "help": "Data root (default: $RBC_DATA_DIR, else ~/.cache/robustbench_cnn/data).",
        },
    ),
    "store": (
        ("--store",),
        {
            "type": click.Path(file_okay=False),
            "default": None,
            "help": "Model store (default: $RBC_HOME, else ~/.cache/robustbench_cnn).",
        },
    ),
    "device": (("--device",), {"default": "auto", "show_default": True, "help": "auto | cpu | cuda | cuda:N | mps."}),
    "seed": (("--seed",), {"type": int, "default": 0, "show_default": True, "help": "Random seed."}),
    "progress": (
        ("--progress/--no-progress",),
        {"default": True, "show_default": True, "help": "Show progress bars."},
    ),
}

data_dir_option = click.option(*SHARED["data_dir"][0], **SHARED["data_dir"][1])
store_option = click.option(*SHARED["store"][0], **SHARED["store"][1])
device_option = click.option(*SHARED["device"][0], **SHARED["device"][1])
seed_option = click.option(*SHARED["seed"][0], **SHARED["seed"][1])
progress_option = click.option(*SHARED["progress"][0], **SHARED["progress"][1])
dataset_option = click.option(
    "--dataset",
    "-d",
    default="digits",
    show_default=True,
    help="digits | mnist | fashion-mnist | cifar10 | imagefolder:PATH.",
)
#: The norms the registered attacks support (``rbc attacks list``, column norms), for the --threat help texts;
#: tests/test_cli_surprises.py checks it against the registry. l1 and l0 parse but no attack takes them.
ATTACK_NORMS_HELP = "linf or l2 or l1 or l0 (l1 and l0: only the minimal norm attacks fmn and fab; rbc attacks list)"
common_options = compose(data_dir_option, store_option, device_option, seed_option, progress_option)


def out_option(
    help: str = "Run folder (default results/<run-id>).", *, dest: str = "out", type: click.ParamType | None = None
) -> Callable:
    """``-o/--out``: where a command writes (a run folder, or a file where ``type`` says so), delivered to the
    command function as ``dest``. Given before the subcommand (``rbc --out DIR attack ...``) it is the same."""
    return click.option("--out", "-o", dest, type=type, default=None, help=help)


def root_options(fn: Callable) -> Callable:
    """The shared options on the root group: ``--threads`` (also env ``RBC_THREADS``) and those of
    :data:`SHARED` plus ``--out``. They record what is given for the subcommand, whose own value wins."""

    def threads_given(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        return record_root_value(ctx, param, check_threads(value))

    root = [
        click.option(
            "--threads",
            type=int,
            envvar="RBC_THREADS",
            default=None,
            expose_value=False,
            callback=threads_given,
            help=THREADS_HELP,
        )
    ]
    for decls, attrs in SHARED.values():
        root.append(
            click.option(
                *decls,
                **{**attrs, "default": None, "show_default": False},
                expose_value=False,
                callback=record_root_value,
            )
        )
    root.append(
        click.option(
            "--out",
            type=click.Path(),
            default=None,
            expose_value=False,
            callback=record_root_value,
            help="The subcommand's -o/--out (its run folder or output file).",
        )
    )
    return compose(*root)(fn)


_DEPRECATED = "Note: {flag} is deprecated and goes away in the next release: use -p/--param KEY=VALUE."


class _ParamOption(click.Option):
    """``-p/--param KEY=VALUE``, repeatable, with hidden legacy spellings merged in (first) and noted as
    deprecated on stderr. Every pair is checked here, so a malformed one is named with the spelling used."""

    def __init__(self, *args: Any, legacy: tuple[tuple[str, str], ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.legacy = legacy  # (spelling, parameter name of its hidden option)

    def consume_value(self, ctx: click.Context, opts: Any) -> tuple[Any, ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        pairs: list[str] = []
        for flag, name in self.legacy:
            old = tuple(opts.get(name) or ())
            if old:
                click.echo(_DEPRECATED.format(flag=flag), err=True)
                parse_key_values(old, flag)
                pairs.extend(old)
                source = ParameterSource.COMMANDLINE
        own = tuple(value) if isinstance(value, (list, tuple)) else ()
        parse_key_values(own, "--param")
        return (*pairs, *own), source


def param_option(what: str, *legacy: str, dest: str = "param") -> Callable:
    """``-p/--param KEY=VALUE`` (repeatable) for the ``what`` parameters (e.g. "attack", "defense"), delivered as
    a tuple of ``KEY=VALUE`` strings to ``dest``. Each ``legacy`` spelling (e.g. ``--arch-arg``) stays as a
    hidden alias for one release: its pairs come first (so ``-p`` wins on a repeated key) and using it prints a
    one-line deprecation note to stderr."""
    hidden = [
        click.option(
            flag, f"legacy_{flag.lstrip('-').replace('-', '_')}", multiple=True, hidden=True, expose_value=False
        )
        for flag in legacy
    ]
    main = click.option(
        "--param",
        "-p",
        dest,
        cls=_ParamOption,
        legacy=tuple((flag, f"legacy_{flag.lstrip('-').replace('-', '_')}") for flag in legacy),
        multiple=True,
        metavar="KEY=VALUE",
        help=f"{what[:1].upper()}{what[1:]} parameter KEY=VALUE, repeatable (e.g. -p steps=20; JSON values, "
        "fractions such as 2/255).",
    )
    return compose(main, *hidden)


def parse_kv(pairs: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """``("depth=16",)`` -> ``{"depth": 16}`` (see :func:`~robustbench_cnn.commands.errors.parse_key_values`)."""
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
            help=f"Norm, or NORM:EPS such as linf:8/255. Norms: {ATTACK_NORMS_HELP}.",
        ),
        click.option("--eps", "-e", default=None, help="Comma-separated epsilons, e.g. 0,0.1,8/255."),
        click.option("-n", "n", type=int, default=1000, show_default=True, help="Test images (seeded subset)."),
        click.option("--targeted/--untargeted", default=False, show_default=True),
        click.option(
            "--target-policy", default="random", show_default=True, help="random | least-likely | next | class:K | all."
        ),
        click.option("--batch-size", type=int, default=256, show_default=True),
        out_option(),
        click.option("--resume/--no-resume", default=False, help="Continue a run folder, skipping finished cells."),
        common_options,
    )(fn)
