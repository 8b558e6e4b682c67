"""``patch``: one model against universal adversarial patches, success rate per patch size and per target class.

The cell runs :func:`robustbench_cnn.evaluation.patches.evaluate_patches` (the universal patch of Brown et al. 2017,
learned with expectation over transformation, Athalye et al. 2018): for each patch area of ``sizes`` and each entry
of ``targets`` (-1: untargeted; else a target class) it learns one patch on ``train_n`` training images of the
cell's dataset (seeded subset) and pastes it on the cell's ``n`` test points at ``placements`` seeded random
positions each. It writes no attack-summary rows (a patch has no epsilon ball); its tables are:

- ``patch``: one row per (size, target): the requested area, the patch's side and the area it really covers, the
  success rate over the attacked (point, placement) pairs with its 95% Clopper-Pearson interval, the robust accuracy
  (untargeted: correct and not fooled), the success on the training images, seconds, the attack's parameters and
  the patch's pixels (JSON), with the model columns;
- ``patch_samples``: one row per (size, target, placement, point): label, clean correctness, attacked, success and
  the prediction with the patch.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellResult
from robustbench_cnn.pipeline.cells.whitebox import OneModelKind, prepare_cell

__all__ = ["Patch", "check_patch", "parse_patch_targets", "patch_cell"]

#: -1 in ``targets``: the untargeted patch.
UNTARGETED = -1


def patch_cell(
    model: str,
    dataset: str,
    sizes: list[float],
    targets: list[int] = (UNTARGETED,),  # type: ignore[assignment]
    *,
    attack_params: dict[str, Any] | None = None,
    train_n: int | None = 10_000,
    placements: int = 1,
    n: int | None = 1000,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    model_def: str | None = None,
    weights: str | None = None,
    after: tuple[str, ...] = (),
) -> Cell:
    """A ``patch`` cell: ``model`` (store name or checkpoint path; a label with a bring-your-own ``model_def`` and
    ``weights``) on ``n`` test points of ``dataset``, one universal patch per area of ``sizes`` and per entry of
    ``targets`` (-1 untargeted, else a class), learned on ``train_n`` training images (None: all)."""
    return Cell(
        kind="patch",
        model=model,
        dataset=dataset,
        params={
            "sizes": sorted({float(s) for s in sizes}),
            "targets": sorted({int(t) for t in targets}),
            "attack_params": dict(attack_params or {}),
            "train_n": train_n,
            "placements": int(placements),
            "model_def": model_def,
            "weights": weights,
        },
        n=n,
        seed=seed,
        after=tuple(after),
        device=device,
        batch_size=batch_size,
        data_dir=str(data_dir) if data_dir else None,
        store=str(store) if store else None,
    )


def parse_patch_targets(text: str | int | None, num_classes: int) -> list[int]:
    """The targets of a ``patch`` cell from a command's ``--target``: ``none`` (untargeted, -1), a class ``3``,
    ``all`` (every class) or a comma-separated mix (``none,3``); ``ValueError`` otherwise."""
    parts = [p.strip().lower() for p in str("none" if text is None else text).split(",") if p.strip()]
    if not parts:
        raise ValueError("invalid --target '': give none (untargeted), a class such as 3, or all")
    targets: set[int] = set()
    for part in parts:
        if part in ("none", "untargeted"):
            targets.add(UNTARGETED)
        elif part == "all":
            targets.update(range(num_classes))
        elif part.isdigit() and int(part) < num_classes:
            targets.add(int(part))
        else:
            raise ValueError(
                f"invalid --target {part!r}: use none (untargeted), a class 0 to {num_classes - 1}, all, or a "
                "comma-separated mix such as none,3"
            )
    return sorted(targets)


def check_patch(params: dict[str, Any], num_classes: int | None = None) -> None:
    """``ValueError`` naming the first invalid setting of a ``patch`` cell (before any work)."""
    from robustbench_cnn.attacks import get_attack
    from robustbench_cnn.core.patch_threat import PatchThreat

    if not params["sizes"]:
        raise ValueError("invalid --sizes: give at least one patch area, e.g. 0.05,0.1,0.2")
    for size in params["sizes"]:
        if not PatchThreat(size).area > 0:
            raise ValueError(f"invalid patch size {size:g}: a patch must cover more than 0 of the image")
    if not params["targets"]:
        raise ValueError("invalid --target: give none (untargeted), a class, or all")
    for target in params["targets"]:
        if target < UNTARGETED or (num_classes is not None and target >= num_classes):
            top = f" to {num_classes - 1}" if num_classes is not None else ""
            raise ValueError(f"invalid target class {target}: use a class 0{top}, or none for untargeted")
    if params["placements"] < 1:
        raise ValueError(f"invalid --placements {params['placements']}: must be >= 1")
    if params["train_n"] is not None and params["train_n"] < 1:
        raise ValueError(f"invalid --train-n {params['train_n']}: must be >= 1")
    get_attack("patch", **params["attack_params"])  # unknown or invalid attack parameters


@CELL_KINDS.register("patch")
class Patch(OneModelKind):
    """Universal adversarial patches: success rate against patch area, untargeted and per target class."""

    def check(self, cell: Cell) -> None:
        from robustbench_cnn.data import dataset_info

        check_patch(cell.params, dataset_info(cell.dataset, cell.data_dir).num_classes)

    def run(self, cell: Cell, progress: bool = False) -> CellResult:
        from robustbench_cnn.core.devices import resolve_device
        from robustbench_cnn.data import load_split
        from robustbench_cnn.evaluation.patches import evaluate_patches

        p = cell.params
        device = resolve_device(cell.device)
        model, meta, split = prepare_cell(cell, device)
        train = load_split(cell.dataset, "train", n=p["train_n"], data_dir=cell.data_dir)
        evaluation = evaluate_patches(
            model,
            train.x.to(device),
            train.y.to(device),
            split.x.to(device),
            split.y.to(device),
            p["sizes"],
            [None if t == UNTARGETED else t for t in p["targets"]],
            attack_params=p["attack_params"],
            placements=p["placements"],
            seed=cell.seed,
            batch_size=cell.batch_size,
            indices=split.index,
        )
        model_cols = {k: meta.get(k, "") for k in ("model", "checkpoint_sha256", "arch", "defense", "dataset")}
        rows = [
            {
                **model_cols,
                **rec,
                "attack": "patch",
                "attack_params": json.dumps(rec["attack_params"], sort_keys=True),
                "patch": json.dumps(rec["patch"]),
                "patch_shape": json.dumps(rec["patch_shape"]),
            }
            for rec in evaluation.rows
        ]
        samples = [{"model": meta.get("model", ""), **rec} for rec in evaluation.samples]
        return CellResult(
            tables={"patch": pd.DataFrame(rows), "patch_samples": pd.DataFrame(samples)},
            model=meta,
            device=str(device),
        )
