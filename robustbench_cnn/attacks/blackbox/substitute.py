"""Substitute ("proxy") training by Jacobian-based dataset augmentation (Papernot et al. 2017).

Paper: Papernot, McDaniel, Goodfellow, Jha, Celik & Swami, "Practical Black-Box Attacks against
Machine Learning", AsiaCCS 2017 (https://arxiv.org/abs/1602.02697), Algorithm 1.

The attacker holds a small seed set ``S_0`` (by default the *last* 150 images of the seed-0
permutation of the test split; evaluation with ``load_split(..., n=...)`` uses the *first* n of the
same permutation, so the two are disjoint as long as ``n <= len(test) - seed_size``). Each round ``rho``:

1. label the new points of ``S_rho`` through the :class:`~attacks.blackbox.oracle.Oracle` (labels,
   or soft labels in scores mode): one query per new point;
2. train the substitute ``F`` on everything labelled so far (``epochs_per_round`` epochs of
   :func:`robustbench_cnn.training.fit`, warm-started from the previous round);
3. unless it is the last round, augment: add new points made from parents in ``S_rho`` by the
   transformations of :mod:`~attacks.blackbox.augment` (``augmentations``). Papernot's own is ``jacobian``:
   ``clip(x + lambda_rho * sign(J_F(x)[O(x)]), 0, 1)`` where ``J_F(x)[O(x)]`` is the gradient of the
   substitute's logit for the oracle's label and ``lambda_rho = lambda * (-1) ** floor(rho / tau)`` (the sign
   flips every ``tau`` rounds, Papernot's periodic step size).

Two choices differ from the paper by default, because they transfer better at the same budget (measured in
``docs/blackbox.md``):

- ``growth="budget"``: each round adds ``ceil(remaining budget / rounds left)`` points, so the whole budget is
  labelled by the last round (Papernot's ``growth="double"`` doubles the set, 100 -> 3,200 labels over 6 rounds,
  leaving half of a 6,400 budget unused);
- ``augmentations=("shift-jacobian", "shift-fgsm")``: half of the new points are a randomly translated parent
  (up to ``max_shift`` pixels) moved by Papernot's Jacobian step, half a translated parent moved by the
  substitute's FGSM step of ``probe_eps`` (default ``3 * |lambda|``), i.e. the substitute's own adversarial
  examples, whose oracle labels teach it where the target does *not* follow it. ``("jacobian",)`` with
  ``growth="double"`` is Papernot's Algorithm 1.

``max_new_per_round`` (Papernot's reservoir sampling, kappa) caps the new points of a round; the budget caps
every round at ``oracle.remaining()`` and training stops cleanly when nothing is left. ``label_smoothing`` and
``mixup`` regularise the substitute's training (off by default: both lowered transfer in our measurements).

Substitute accuracy and agreement with the target are measured on held-out test images (the first
``holdout_n`` of the permutation, disjoint from the seed set). That evaluation is the experimenter's,
not the attacker's: it calls the target directly and is **not** counted as attacker queries.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.attacks.blackbox.augment import AUGMENTATIONS, augment_points, jacobian_augment
from robustbench_cnn.attacks.blackbox.oracle import Oracle
from robustbench_cnn.core.devices import resolve_device
from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.data import SPLIT_SEED, Split, load_split, select_indices
from robustbench_cnn.models import NormalizedModel, build_for_dataset
from robustbench_cnn.store import ModelCard, checkpoint_name, git_sha, package_versions, save_checkpoint
from robustbench_cnn.training import StepContext, TrainConfig, fit, predict

__all__ = [
    "GROWTHS",
    "HISTORY_DTYPES",
    "SubstituteResult",
    "eval_indices",
    "jacobian_augment",
    "load_seed_set",
    "seed_set_indices",
    "substitute_name",
    "train_substitute",
]

#: How the substitute set grows between rounds (see :func:`train_substitute`).
GROWTHS = ("budget", "double")

#: Columns of ``SubstituteResult.history`` (one row per round) and their dtypes.
HISTORY_DTYPES: dict[str, str] = {
    "round": "int64",
    "lambda": "float64",
    "train_size": "int64",
    "new_queries": "int64",
    "queries": "int64",
    "substitute_accuracy": "float64",
    "agreement": "float64",
    "seconds": "float64",
}


# --- the attacker's seed set vs. the evaluation set ----------------------------------------------


def seed_set_indices(total: int, size: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """Indices of the attacker's seed set: the *last* ``size`` of the seeded permutation (sorted).

    :func:`robustbench_cnn.data.select_indices` takes the *first* n of the same permutation for
    evaluation, so the two never overlap while ``n <= total - size``.
    """
    if not 0 < size < total:
        raise ValueError(f"invalid seed-set size {size}: must be in [1, {total - 1}] for a split of {total}")
    return np.sort(np.random.default_rng(seed).permutation(total)[total - size :])


def eval_indices(total: int, n: int | None, seed_size: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """Evaluation indices (``select_indices``) guaranteed disjoint from a seed set of ``seed_size``."""
    limit = total - seed_size
    if n is not None and n > limit:
        raise ValueError(
            f"evaluation n={n} would overlap the attacker's seed set: with a seed set of {seed_size}, use n <= {limit}"
        )
    return select_indices(total, limit if n is None else n, seed)


def load_seed_set(dataset: str, size: int = 150, *, data_dir: str | os.PathLike | None = None) -> Split:
    """The attacker's seed set: ``size`` test images from the end of the seed-0 permutation."""
    test = load_split(dataset, "test", data_dir=data_dir)
    idx = torch.from_numpy(seed_set_indices(len(test), size))
    return Split(test.x[idx].contiguous(), test.y[idx].contiguous(), idx, test.info, "test")


class _SubstituteRecipe:
    """Cross-entropy against the oracle's answers as distributions, with label smoothing and mixup.

    ``targets`` (N x K) are one-hot oracle labels (labels mode) or the oracle's probabilities (scores
    mode). ``fit`` is handed the row indices as labels, so its batching and accounting stay those of hard
    labels; the recipe looks the targets up by index. ``label_smoothing`` mixes each target with the uniform
    distribution (Szegedy et al. 2016); ``mixup`` > 0 trains on convex combinations of two points and of
    their targets with a Beta(mixup, mixup) weight per batch (Zhang et al. 2018). Both only reshape what the
    oracle said: no label comes from anywhere else.
    """

    name = "substitute"

    def __init__(self, targets: torch.Tensor, label_smoothing: float = 0.0, mixup: float = 0.0) -> None:
        self.targets = targets
        self.label_smoothing = float(label_smoothing)
        self.mixup = float(mixup)

    def params(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing, "mixup": self.mixup}

    def loss(self, model: nn.Module, x: torch.Tensor, idx: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        t = self.targets[idx.cpu()].to(x.device)
        if self.label_smoothing:
            t = (1 - self.label_smoothing) * t + self.label_smoothing / t.shape[1]
        if self.mixup > 0 and len(x) > 1:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
            w = float(np.random.default_rng(seed).beta(self.mixup, self.mixup))
            perm = torch.randperm(len(x), generator=ctx.generator).to(x.device)
            x, t = w * x + (1 - w) * x[perm], w * t + (1 - w) * t[perm]
        with ctx.autocast():
            logits = model(x)
        return F.cross_entropy(logits.float(), t)


def substitute_name(dataset_slug: str, substitute_arch: str, target_name: str | None, tag: str | None = None) -> str:
    """The store name :func:`train_substitute` saves under: ``<dataset>/<arch>-substitute[-<tag>]``, the tag
    defaulting to ``of-<target>`` (the target name's last part, file-system safe)."""
    short = _safe_tag(target_name.split("/")[-1]) if target_name else None
    return checkpoint_name(dataset_slug, substitute_arch, "substitute", tag or (f"of-{short}" if short else None))


# --- the training loop --------------------------------------------------------------------------------


@dataclass
class SubstituteResult:
    """A trained substitute, its per-round history and the attacker queries spent."""

    model: NormalizedModel
    history: pd.DataFrame
    queries: int
    card: ModelCard
    folder: Path | None


def _default_config(epochs: int, device: str, seed: int) -> TrainConfig:
    # Small sets (150 to 4,800 points): small batches, Adam at a constant rate, warm start each round.
    return TrainConfig(
        epochs=epochs,
        batch_size=32,
        optimizer="adam",
        lr=1e-3,
        schedule="constant",
        weight_decay=0.0,
        device=device,
        seed=seed,
    )


def _safe_tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "target"


def train_substitute(
    target_model: nn.Module | Oracle,
    dataset: str,
    substitute_arch: str = "lenet5",
    *,
    seed_size: int = 150,
    rounds: int = 6,
    lam: float = 0.1,
    tau: int = 3,
    budget: int | None = 6400,
    epochs_per_round: int = 10,
    oracle_mode: Literal["labels", "scores"] = "labels",
    max_new_per_round: int | None = None,
    growth: Literal["double", "budget"] = "budget",
    augmentations: Sequence[str] = ("shift-jacobian", "shift-fgsm"),
    max_shift: int | None = None,
    label_smoothing: float = 0.0,
    mixup: float = 0.0,
    probe_eps: float | None = None,
    holdout_n: int | None = 1000,
    members: int = 3,
    member_epochs: int = 30,
    train_config: TrainConfig | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    save: bool = True,
    store: str | os.PathLike | None = None,
    target_name: str | None = None,
    tag: str | None = None,
    progress: bool = False,
) -> SubstituteResult:
    """Train a substitute of ``target_model`` from oracle labels (Papernot et al. 2017, Algorithm 1).

    Args:
        target_model: the target ``nn.Module`` (wrapped in an :class:`Oracle` with ``oracle_mode``
            and ``budget``), or a ready :class:`Oracle` (its own mode and budget then apply).
        dataset: the dataset the seed set and held-out images come from (``digits``, ``mnist``, ...).
        substitute_arch: a registered architecture (``rbc models list``), built for the dataset.
        seed_size: images in the seed set (Papernot: 150 for MNIST).
        rounds: substitute training rounds rho (the set is augmented between rounds).
        lam, tau: augmentation step lambda; its sign flips every ``tau`` rounds.
        budget: total oracle queries allowed (None: unlimited); the count never exceeds it.
        epochs_per_round: training epochs per round (unless ``train_config`` says otherwise).
        oracle_mode: ``labels`` (hard labels) or ``scores`` (train on the softmax probabilities).
        max_new_per_round: reservoir sampling: augment at most this many points per round.
        growth: ``budget`` (default: spread the budget evenly over the rounds; without a budget, as ``double``)
            or ``double`` (Papernot: one new point per point of the set).
        augmentations: the transformations making the new points, in equal shares (see
            :mod:`~attacks.blackbox.augment`): ``jacobian``, ``shift-jacobian``, ``fgsm``, ``shift-fgsm``, ``noise``
            (default ``("shift-jacobian", "shift-fgsm")``; ``("jacobian",)`` is Papernot's).
        max_shift: the largest translation of the ``shift-*`` transformations, pixels (default: image size / 8,
            at least 1: 3 for MNIST, 1 for 8x8 digits).
        probe_eps: the step of the ``fgsm`` transformations, linf (default ``3 * |lam|``: 0.3 at lambda 0.1).
        label_smoothing, mixup: substitute training regularisers (default 0: off); mixup is the Beta parameter.
        holdout_n: held-out test images for the per-round accuracy and agreement (capped so that they
            stay disjoint from the seed set).
        members: substitutes in the returned ensemble (default 3; 1 is Papernot's single substitute). The first is
            the one trained through the rounds; each other one is trained from scratch on the final labelled set
            (no further queries) for ``member_epochs`` epochs (default 30), with its own seed; the ensemble averages
            their logits (architecture ``ensemble``, :mod:`robustbench_cnn.models.ensemble`); what it gains in
            transfer success is measured in docs/blackbox.md.
        train_config: training hyper-parameters (default: Adam 1e-3, batch 32, constant rate).
        seed: seeds training and the reservoir choice.
        save, store, target_name, tag: save the substitute to the model store as
            ``<dataset>/<arch>-substitute[-<tag>]`` (tag default ``of-<target>``), recipe ``substitute``.

    Returns:
        :class:`SubstituteResult` with ``history`` (one row per round; columns ``HISTORY_DTYPES``;
        ``lambda`` is the step that made the round's new points, 0 in round 1; ``agreement`` is NaN
        when only an Oracle is given) and ``queries`` (exactly the oracle's count; ``<= budget``).

    Example::

        >>> result = train_substitute(target, "mnist", "lenet5", budget=6400, target_name="mnist/smallcnn-standard")
        >>> result.queries, result.history["agreement"].iloc[-1]
        >>> transfer_attack(result.model, target, x, y, ThreatModel.parse("linf:0.3"), "fgsm")
    """
    if rounds < 1:
        raise ValueError(f"invalid rounds {rounds}: must be >= 1")
    if tau < 1:
        raise ValueError(f"invalid tau {tau}: must be >= 1")
    if max_new_per_round is not None and max_new_per_round < 1:
        raise ValueError(f"invalid max_new_per_round {max_new_per_round}: must be >= 1 or None")
    if growth not in GROWTHS:
        raise ValueError(f"invalid growth {growth!r}: use one of {', '.join(GROWTHS)}")
    augmentations = tuple(augmentations)
    unknown = sorted(set(augmentations) - set(AUGMENTATIONS))
    if not augmentations or unknown:
        raise ValueError(
            f"invalid augmentation(s) {', '.join(unknown) or 'none'}: use some of {', '.join(AUGMENTATIONS)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"invalid label_smoothing {label_smoothing}: must be in [0, 1)")
    if mixup < 0:
        raise ValueError(f"invalid mixup {mixup}: must be >= 0 (0: off)")
    if members < 1 or member_epochs < 1:
        raise ValueError(f"invalid members {members} / member_epochs {member_epochs}: both must be >= 1")
    if substitute_arch == "ensemble" and members > 1:
        raise ValueError("the substitute architecture is already an ensemble: give members=1 (--members 1)")
    oracle = target_model if isinstance(target_model, Oracle) else Oracle(target_model, oracle_mode, budget)
    remaining = oracle.remaining()
    if remaining is not None and remaining < seed_size:
        raise RbcError(
            f"query budget {oracle.budget} is too small to label the seed set of {seed_size} ({remaining} queries left)"
        )
    start = time.perf_counter()
    dev = resolve_device(device)
    test = load_split(dataset, "test", data_dir=data_dir)
    info, total = test.info, len(test)
    seed_idx = torch.from_numpy(seed_set_indices(total, seed_size))
    hold_n = min(holdout_n or total, total - seed_size)
    hold_idx = torch.from_numpy(eval_indices(total, hold_n, seed_size))
    hold_x, hold_y = test.x[hold_idx], test.y[hold_idx]

    with torch.random.fork_rng(devices=[]):  # initial weights from ``seed``, not from the global RNG's history
        torch.manual_seed(seed)
        substitute = build_for_dataset(substitute_arch, info, **(arch_kwargs or {}))
    substitute.to(dev)
    # The experimenter's view of the target (not the attacker's; not counted as queries).
    target_for_eval = target_model if isinstance(target_model, nn.Module) else None
    hold_target = None if target_for_eval is None else predict(target_for_eval, hold_x).argmax(1)

    def ask(x_new: torch.Tensor) -> torch.Tensor:
        ids = torch.arange(n_labelled, n_labelled + len(x_new))
        answer = oracle(x_new, ids=ids)
        return answer if oracle.mode == "labels" else answer.float()

    x_sub = test.x[seed_idx].clone()
    n_labelled = 0
    answers = ask(x_sub)
    n_labelled = len(x_sub)
    generator = torch.Generator().manual_seed(seed)
    shift = max(1, info.size // 8) if max_shift is None else int(max_shift)
    probe = 3 * abs(lam) if probe_eps is None else float(probe_eps)
    rows: list[dict[str, Any]] = []
    total_epochs = 0
    config = train_config
    for rho in range(rounds):
        lam_rho, new_queries = 0.0, len(x_sub)  # round 1 trains on the seed set
        if rho > 0:
            # augmentation number rho - 1, with the substitute of the previous round
            lam_rho = lam * (-1) ** ((rho - 1) // tau)
            left = oracle.remaining()
            if growth == "budget" and left is not None:
                k = -(-left // (rounds - rho))  # the rest of the budget, spread evenly over the rounds left
            else:
                k = len(x_sub)  # Papernot: one new point per point of the set
            if max_new_per_round is not None:
                k = min(k, max_new_per_round)
            if left is not None:
                k = min(k, left)
            if k <= 0:
                break  # the budget is spent: stop cleanly
            labels = answers if answers.dim() == 1 else answers.argmax(1)
            x_new, _ = augment_points(
                substitute, x_sub, labels, k, lam_rho, generator, kinds=augmentations, max_shift=shift, probe_eps=probe
            )
            new_answers = ask(x_new)
            n_labelled += len(x_new)
            x_sub = torch.cat([x_sub, x_new])
            answers = torch.cat([answers, new_answers])
            new_queries = len(x_new)
        t0 = time.perf_counter()
        config = train_config or _default_config(epochs_per_round, str(dev), seed + rho)
        targets = F.one_hot(answers, info.num_classes).float() if answers.dim() == 1 else answers
        fit(
            substitute,
            x_sub,
            torch.arange(len(x_sub)),
            config,
            recipe=_SubstituteRecipe(targets, label_smoothing, mixup),
            progress=progress,
            description=f"substitute round {rho + 1}/{rounds}",
        )
        total_epochs += config.epochs
        sub_pred = predict(substitute, hold_x).argmax(1)
        rows.append(
            {
                "round": rho + 1,
                "lambda": float(lam_rho),
                "train_size": len(x_sub),
                "new_queries": new_queries,
                "queries": oracle.total,
                "substitute_accuracy": float((sub_pred == hold_y).float().mean()),
                "agreement": float((sub_pred == hold_target).float().mean())
                if hold_target is not None
                else float("nan"),
                "seconds": time.perf_counter() - t0,
            }
        )
    history = pd.DataFrame(rows, columns=list(HISTORY_DTYPES)).astype(HISTORY_DTYPES)
    ensemble_stats: dict[str, Any] = {}
    final_arch, final_kwargs = substitute_arch, dict(arch_kwargs or {})
    if members > 1:  # further members learn the last round's labelled set (``x_sub``, ``targets``)
        nets = [substitute.net]
        for k in range(1, members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + k)
                member = build_for_dataset(substitute_arch, info, **(arch_kwargs or {})).to(dev)
            fit(
                member,
                x_sub,
                torch.arange(len(x_sub)),
                _default_config(member_epochs, str(dev), seed + k),
                recipe=_SubstituteRecipe(targets, label_smoothing, mixup),
                progress=progress,
                description=f"substitute member {k + 1}/{members}",
            )
            nets.append(member.net)
        final_arch = "ensemble"
        final_kwargs = {"member_arch": substitute_arch, "members": members, "member_kwargs": dict(arch_kwargs or {})}
        whole = build_for_dataset(final_arch, info, **final_kwargs)
        for slot, net in zip(whole.net.members, nets, strict=True):
            slot.load_state_dict(net.state_dict())
        whole.to(dev)
        pred = predict(whole, hold_x).argmax(1)
        ensemble_stats = {
            "members": members,
            "member_epochs": member_epochs,
            "ensemble_accuracy": float((pred == hold_y).float().mean()),
            "ensemble_agreement": float((pred == hold_target).float().mean()) if hold_target is not None else None,
        }
        substitute = whole
    substitute.cpu().eval()

    name = substitute_name(info.slug, substitute_arch, target_name, tag)
    hyper = {
        "seed_size": seed_size,
        "rounds": rounds,
        "lambda": lam,
        "tau": tau,
        "budget": oracle.budget,
        "epochs_per_round": epochs_per_round,
        "oracle_mode": oracle.mode,
        "max_new_per_round": max_new_per_round,
        "growth": growth,
        "augmentations": list(augmentations),
        "max_shift": shift,
        "label_smoothing": label_smoothing,
        "mixup": mixup,
        "probe_eps": probe,
        "holdout_n": hold_n,
        "members": members,
        "member_epochs": member_epochs,
        "train": {k: v for k, v in config.to_dict().items() if k not in ("device", "seed")},
    }
    last = rows[-1]
    card = ModelCard(
        name=name,
        arch=final_arch,
        arch_kwargs=final_kwargs,
        dataset=info.name,
        input_shape=list(info.input_shape),
        num_classes=info.num_classes,
        classes=list(info.classes),
        mean=[float(v) for v in info.mean],
        std=[float(v) for v in info.std],
        recipe="substitute",
        hyperparameters=hyper,
        epochs=total_epochs,
        seed=seed,
        clean_accuracy=ensemble_stats.get("ensemble_accuracy", last["substitute_accuracy"]),
        train_time_s=round(time.perf_counter() - start, 3),
        versions=package_versions(),
        git_sha=git_sha(),
        extra={
            "target": target_name,
            "queries": int(oracle.total),
            "oracle_mode": oracle.mode,
            "agreement": ensemble_stats.get("ensemble_agreement", last["agreement"]),
            "history": history.to_dict("records"),
            **({"ensemble": ensemble_stats} if ensemble_stats else {}),
            "seed_set": {
                "split": "test",
                "permutation_seed": SPLIT_SEED,
                "size": seed_size,
                "position": "last",
                "total": total,
            },
            "eval_max_n": total - seed_size,
        },
    )
    folder = save_checkpoint(substitute, card, store) if save else None
    return SubstituteResult(substitute, history, int(oracle.total), card, folder)
