"""``rbc defend`` and ``rbc tradeoff``: adversarial training and the clean/robust trade-off table.

The commands only parse options and call :func:`robustbench_cnn.defenses.train.defend` and
:func:`robustbench_cnn.reporting.tradeoff.write_tradeoff_table`. ``rbc defend`` shares ``train_options`` with
``rbc train`` (one training loop, one set of options).
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import out_option, param_option, parse_kv, store_option, train_options
from robustbench_cnn.commands.output import out, table

#: Shown in ``--help`` without importing torch; ``tests/test_defenses.py`` checks it against the registry.
DEFENSE_NAMES = ("standard", "pgd-at", "n-fgsm", "atta", "fgsm-rs", "trades", "mart", "free-at", "gaussian-noise")

#: Training options a recipe's preset may fill when the user leaves them at their defaults.
PRESET_TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay", "augment", "normalize")


def split_params(pairs: tuple[str, ...], defense_parameters: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``-p KEY=VALUE`` pairs of ``rbc defend`` -> (defense parameters, architecture parameters): a key the
    defense declares (``defense_parameters``, its ``defaults``) is the defense's, any other the architecture's
    (whose factory refuses what it does not take)."""
    params = parse_kv(pairs)
    ours = set(defense_parameters)
    return {k: v for k, v in params.items() if k in ours}, {k: v for k, v in params.items() if k not in ours}


def _describe(event: dict[str, Any]) -> str:
    """One guard event in words (``collapse at epoch 4: PGD 0.70 -> 0.20``)."""
    if event["event"] == "gap":
        what = f"train {event['before']:.2f} vs PGD {event['after']:.2f}"
    elif event["event"] == "restored":
        what = f"epoch {event['best_epoch']} restored, PGD {event['before']:.2f} -> {event['after']:.2f}"
    else:
        what = f"PGD {event['before']:.2f} -> {event['after']:.2f}"
    return f"{event['event']} at epoch {event['epoch']}: {what}"


@click.command("defend", cls=RbcCommand)
@click.option(
    "--defense",
    required=True,
    help=f"Training recipe: {' | '.join(DEFENSE_NAMES)}. Single-step (2 passes per batch, guarded against "
    "catastrophic overfitting): atta (Zheng et al. 2020, perturbations kept across epochs; at MNIST linf 0.3 its "
    "preset held on 12 of 12 seeds), n-fgsm (de Jorge et al. 2022), fgsm-rs; at MNIST linf 0.3 the last two can "
    "collapse (docs/single_step_at.md). Settings you do not give come from the recipe's published preset for the "
    "dataset and norm, printed and recorded in the card.",
)
@click.option(
    "--threat",
    "-t",
    required=True,
    help="Training threat model NORM:EPS, NORM linf or l2 (the defenses' inner maximisation), e.g. "
    "linf:0.3, linf:8/255, l2:0.5.",
)
@train_options
@click.option(
    "--alpha", default=None, help="Step size of the inner maximisation (e.g. 0.01 or 2/255; default by defense)."
)
@click.option("--steps", type=int, default=None, help="Inner maximisation steps (pgd-at, trades, mart; default 10).")
@click.option("--beta", type=float, default=None, help="Weight of the robust term (trades, mart; default 6).")
@click.option("--replays", type=int, default=None, help="Minibatch replays m (free-at; default 8).")
@click.option("--guard/--no-guard", default=None, help="Catastrophic-overfitting guard (fgsm-rs; default on).")
@param_option("defense (e.g. guard_drop=0.3) or architecture (e.g. depth=16)", "--defense-arg", "--arch-arg")
@click.option(
    "--eval-n",
    type=int,
    default=500,
    show_default=True,
    help="Held-out test images for the per-epoch clean/PGD monitor.",
)
@click.option("--eval-steps", type=int, default=10, show_default=True, help="PGD steps of the per-epoch monitor.")
@click.option("--init-from", default=None, help="Start from a trained checkpoint (e.g. a standard model).")
@click.option(
    "--final-n",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Held-out test images of the end-of-training evaluation with the default cascade (0: skip); that figure, "
    "with its 95% CI, is the model's robust accuracy in the card and rbc tradeoff.",
)
@out_option("Run folder of the end-of-training evaluation (default results/<run-id>).", dest="out_dir")
def defend_command(
    defense: str,
    threat: str,
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
    data_dir: str | None,
    store: str | None,
    device: str,
    seed: int,
    progress: bool,
    alpha: str | None,
    steps: int | None,
    beta: float | None,
    replays: int | None,
    guard: bool | None,
    param: tuple[str, ...],
    eval_n: int,
    eval_steps: int,
    init_from: str | None,
    final_n: int,
    out_dir: str | None,
) -> None:
    """Train a model with an adversarial-training defense, evaluate the kept state with the default cascade, and
    save it with its trade-off per epoch."""
    from robustbench_cnn.core.devices import resolve_device
    from robustbench_cnn.core.errors import ArchOptionError
    from robustbench_cnn.core.types import ThreatModel, parse_eps
    from robustbench_cnn.defenses import DEFENSES, get_defense
    from robustbench_cnn.defenses.presets import apply_preset
    from robustbench_cnn.models import MODELS
    from robustbench_cnn.pipeline.defend import defend_and_evaluate
    from robustbench_cnn.training import TrainConfig

    MODELS.get(arch)  # unknown names and devices fail before any data is loaded
    resolve_device(device)
    threat_model = ThreatModel.parse_ball(threat)
    params: dict[str, Any] = {
        "alpha": parse_eps(alpha) if alpha is not None else None,
        "steps": steps,
        "beta": beta,
        "replays": replays,
        "guard": guard,
    }
    params = {k: v for k, v in params.items() if v is not None}
    cls = DEFENSES.get(defense)
    declared = cls.defaults
    defense_params, arch_params = split_params(param, declared)
    params.update(defense_params)
    ctx = click.get_current_context()
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "schedule": schedule,
        "weight_decay": weight_decay,
        "augment": augment,
        "normalize": normalize,
    }
    cli_defaults = {k: v for k, v in given.items() if ctx.get_parameter_source(k) is ParameterSource.DEFAULT}
    given = {k: v for k, v in given.items() if k not in cli_defaults}
    applied = apply_preset(cls.presets, dataset, threat_model, params, given)
    recipe = get_defense(defense, threat_model, **applied.params)  # bad parameters fail before any training
    train = {**{k: v for k, v in cli_defaults.items() if v is not None}, **applied.train}
    config = TrainConfig.for_dataset(
        dataset,
        **train,
        amp=amp,
        channels_last=channels_last,
        deterministic=deterministic,
        device=device,
        seed=seed,
    )
    if arch_params:  # architecture options are checked before the preset is printed: an error stays one line
        from robustbench_cnn.data import dataset_info
        from robustbench_cnn.models import build_model

        info = dataset_info(dataset, data_dir)
        try:
            build_model(arch, in_channels=info.channels, num_classes=info.num_classes, input_size=info.size,
                        **arch_params)  # fmt: skip
        except ArchOptionError as exc:
            accepted = ", ".join(sorted(declared)) or "none"
            raise ArchOptionError(
                f"{exc}; -p keys that are not parameters of defense {recipe.name!r} ({accepted}) go to the architecture"
            ) from None
    out.print(applied.describe())
    try:
        run = defend_and_evaluate(
            recipe,
            arch,
            dataset,
            config,
            final_n=final_n,
            out=out_dir,
            preset=applied.record,
            store=store,
            data_dir=data_dir,
            progress=progress,
            eval_n=eval_n,
            eval_steps=eval_steps,
            tag=tag,
            subset=subset,
            init_from=init_from,
            arch_kwargs=arch_params,
        )
    except ArchOptionError as exc:
        if not arch_params:
            raise
        accepted = ", ".join(sorted(declared)) or "none"
        raise ArchOptionError(
            f"{exc}; -p keys that are not parameters of defense {recipe.name!r} ({accepted}) go to the architecture"
        ) from None
    result = run.defended
    rows = result.epochs[["epoch", "loss", "train_accuracy", "clean_accuracy", "pgd_accuracy", "epoch_s"]]
    n = int(result.epochs["eval_n"].iloc[0])
    out.print(
        table(f"{result.card.name}: per epoch (clean / PGD-{eval_steps} on {n} test images)", rows.to_dict("records"))
    )
    events = "; ".join(_describe(e) for e in result.guard_events) or ("none" if "guard" in result.report else "-")
    out.print(
        table(
            "defended",
            [
                {
                    "checkpoint": result.card.name,
                    "defense": recipe.name,
                    "threat": str(threat_model),
                    "clean_acc": result.clean_accuracy,
                    f"pgd{eval_steps}_acc": result.pgd_accuracy,
                    "train_s": result.card.train_time_s,
                    "guard events": events,
                    "device": result.result.device,
                }
            ],
        )
    )
    final = run.final
    if final is not None:
        lo, hi = final["ci95"]
        out.print(
            f"robust accuracy ({final['cascade']} cascade, {final['threat']}, n={final['n']} held-out test images): "
            f"{100 * final['robust_accuracy']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}); run {final['run']}"
        )
    out.print(f"saved to {result.folder}")
    for warning in run.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)


@click.command("tradeoff", cls=RbcCommand)
@store_option
@out_option(
    "Write the table here (.parquet or .csv; default STORE/tradeoff.parquet).",
    dest="out_path",
    type=click.Path(dir_okay=False),
)
def tradeoff_command(store: str | None, out_path: str | None) -> None:
    """Show the clean/robust trade-off of every defended model in the store and write it."""
    from robustbench_cnn.reporting.tradeoff import write_tradeoff_table
    from robustbench_cnn.store import store_root

    path = out_path or store_root(store) / "tradeoff.parquet"
    frame = write_tradeoff_table(store, path)
    columns = [
        "checkpoint",
        "defense",
        "threat",
        "epochs",
        "train_time_s",
        "clean_accuracy",
        "pgd_accuracy",
        "robust_accuracy",
        "robust_ci_lo",
        "robust_ci_hi",
        "robust_n",
        "robust_cascade",
        "guard_fired",
        "guard_restored_epoch",
        "training_flags",
    ]
    records = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")
    out.print(table(f"trade-off: {len(frame)} defended model(s)", records, columns))
    out.print(f"written to {path}")
