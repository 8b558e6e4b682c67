"""Black-box commands of ``rbc``: ``proxy train``, ``transfer`` and ``transfer-matrix``.

They parse options, call one workflow of :mod:`robustbench_cnn.pipeline.workflows` (which runs the cell through
the runner) and print. Tables are printed with rich and written as parquet to ``--out`` (default
``results/<run-id>/``), with ``run.json`` recording the command, the cell and the run metadata.
"""

from __future__ import annotations

from typing import Any

import click

from robustbench_cnn.commands.errors import RbcCommand, RbcGroup
from robustbench_cnn.commands.evaluate import note_capped
from robustbench_cnn.commands.options import common_options, param_option

__all__ = ["proxy_group", "transfer_command", "transfer_matrix_command"]


def _parse_attack_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    from robustbench_cnn.commands.errors import parse_key_values

    return parse_key_values(pairs, "--attack-arg")


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


def _augmentations(text: str) -> tuple[str, ...]:
    """``--augment`` as a tuple of transformation names; an unknown one is a ``ValueError`` with suggestions."""
    import difflib

    from robustbench_cnn.attacks.blackbox.augment import AUGMENTATIONS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    for kind in kinds:
        if kind not in AUGMENTATIONS:
            close = difflib.get_close_matches(kind, AUGMENTATIONS, n=2)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown augmentation {kind!r} for --augment.{hint} Known: {', '.join(AUGMENTATIONS)}.")
    if not kinds:
        raise ValueError(f"--augment needs at least one of {', '.join(AUGMENTATIONS)}")
    return kinds


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
_resume_opt = click.option(
    "--resume/--no-resume", default=False, help="Continue a run folder (--out), skipping a finished cell."
)


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
@click.option(
    "--growth",
    type=click.Choice(["budget", "double"]),
    default="budget",
    show_default=True,
    help="New points per round: spread the budget over the rounds, or double the set (Papernot).",
)
@click.option(
    "--augment",
    "augment",
    default="shift-jacobian,shift-fgsm",
    show_default=True,
    help="How new points are made, in equal shares: jacobian (Papernot), shift-jacobian, fgsm, shift-fgsm, noise.",
)
@click.option(
    "--members",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Substitutes in the saved ensemble (logits averaged): the one trained through the rounds and others trained "
    "from scratch on the same labels, no further queries. 1: Papernot's single substitute.",
)
@click.option(
    "--member-epochs",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Training epochs of each further member.",
)
@click.option("--tag", default=None, help="Checkpoint name suffix (default: of-<target>).")
@_out_opt
@_resume_opt
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
    growth: str,
    augment: str,
    members: int,
    member_epochs: int,
    tag: str | None,
    out: str | None,
    resume: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Train a substitute of TARGET from oracle labels and save it to the model store."""
    from robustbench_cnn.attacks.blackbox.substitute import HISTORY_DTYPES
    from robustbench_cnn.pipeline.workflows import train_proxy

    result = train_proxy(
        target,
        substitute_arch,
        dataset=dataset,
        seed_size=seed_size,
        rounds=rounds,
        lam=lam,
        tau=tau,
        budget=budget,
        oracle_mode=oracle_mode,
        epochs_per_round=epochs_per_round,
        reservoir=reservoir,
        growth=growth,
        augmentations=_augmentations(augment),
        members=members,
        member_epochs=member_epochs,
        tag=tag,
        out=out,
        resume=resume,
        data_dir=data_dir,
        store=store,
        device=device,
        seed=seed,
        progress=progress,
    )
    _print_df(f"substitute {result.substitute} of {result.target}", result.history, list(HISTORY_DTYPES))
    click.echo(f"queries used: {result.queries} of {budget}")
    click.echo(f"saved to {result.folder}  (use it as --source {result.substitute})")
    click.echo(f"history written to {result.run_dir / 'history.parquet'}")


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
@click.option(
    "--threat", default="linf", show_default=True, help="NORM or NORM:EPS, NORM linf or l2 (the attack's norms)."
)
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
@_resume_opt
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
    resume: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Transfer adversarial examples crafted on SOURCE to TARGET (success on target-correct points)."""
    from robustbench_cnn.pipeline.workflows import transfer

    result = transfer(
        source,
        target,
        attack,
        attack_params=_parse_attack_args(attack_arg),
        threat=threat,
        eps=eps_text,
        n=n,
        targeted=targeted,
        target_policy=target_policy,
        dataset=dataset,
        out=out,
        resume=resume,
        data_dir=data_dir,
        store=store,
        device=device,
        seed=seed,
        progress=progress,
    )
    table = result.summary
    n_eff = int(table["n"].iloc[0]) if len(table) else 0
    title = f"transfer {' + '.join(result.sources)} -> {result.target} ({result.attack}, n={n_eff})"
    columns = ["norm", "eps", "clean_acc", "attacked", "success_rate", "robust_acc", "mean_norm", "total_queries"]
    _print_df(title, table, ["target_policy", *columns] if targeted else columns)
    note_capped(n, n_eff, str(table["dataset"].iloc[0]) if len(table) else "")
    click.echo(f"tables written to {result.run_dir}")


@click.command("transfer-matrix", cls=RbcCommand)
@click.option("--models", "model_names", required=True, help="Comma-separated checkpoints (at least 2).")
@click.option("--attack", default="fgsm", show_default=True, help="White-box attack run on each source.")
@_attack_arg_opt
@click.option("--threat", required=True, help="NORM:EPS, NORM linf or l2, e.g. linf:0.3.")
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Test points.")
@click.option("--dataset", "-d", default=None, help="Dataset (default: the first model's).")
@_out_opt
@_resume_opt
@common_options
def transfer_matrix_command(
    model_names: str,
    attack: str,
    attack_arg: tuple[str, ...],
    threat: str,
    n: int,
    dataset: str | None,
    out: str | None,
    resume: bool,
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Success of ATTACK crafted on every model against every model (diagonal: white-box)."""
    from robustbench_cnn.attacks.blackbox.matrix import matrix_wide
    from robustbench_cnn.pipeline.workflows import transfer_matrix

    result = transfer_matrix(
        model_names,
        threat,
        attack,
        attack_params=_parse_attack_args(attack_arg),
        n=n,
        dataset=dataset,
        out=out,
        resume=resume,
        data_dir=data_dir,
        store=store,
        device=device,
        seed=seed,
        progress=progress,
    )
    wide = matrix_wide(result.table).reset_index()
    wide.columns = ["source \\ target"] + [str(c) for c in wide.columns[1:]]
    _print_df(f"transfer success rate ({result.attack}, {result.threat}, n={result.n}; diagonal = white-box)", wide)
    click.echo(f"table written to {result.run_dir / 'transfer_matrix.parquet'}")
