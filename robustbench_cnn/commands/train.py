"""``rbc train``: train a standard model and save it to the model store."""

from __future__ import annotations

import click

from robustbench_cnn.commands.errors import RbcCommand
from robustbench_cnn.commands.options import param_option, parse_kv, train_options
from robustbench_cnn.commands.output import out, table


@click.command(cls=RbcCommand)
@train_options
@param_option("architecture", "--arch-arg")
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
    param: tuple[str, ...],
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
        arch_kwargs=parse_kv(param),
        progress=progress,
    )
    card = trained.card
    out.print(
        table(
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
