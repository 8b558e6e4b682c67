"""Recipe presets: the published hyper-parameters of a defense for one dataset and norm.

Each :class:`~robustbench_cnn.defenses.base.Defense` subclass declares its presets in the class attribute
``presets``, keyed by ``(dataset, norm)`` (``("mnist", "linf")``). A :class:`Preset` holds the defense's parameters,
the training settings (fields of :class:`~robustbench_cnn.training.TrainConfig`) and the paper they come from; step
sizes named in ``scaled`` were published for ``eps`` and scale linearly with the threat's epsilon. ``rbc defend``
fills every setting the user did not give from the preset (:func:`apply_preset`), prints it and records it in the
model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustbench_cnn.core.types import ThreatModel

#: Training settings a preset may fix (fields of ``TrainConfig``).
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay", "augment", "normalize")


#: Wong, Rice & Kolter 2020's MNIST training schedule (their code): 10 epochs, Adam with a cyclic learning rate
#: peaking at 5e-3, batch 100, no weight decay, raw pixels; the MNIST linf presets of the recipes share it.
WONG_MNIST_SCHEDULE: dict[str, object] = {
    "epochs": 10,
    "lr": 5e-3,
    "optimizer": "adam",
    "batch_size": 100,
    "weight_decay": 0.0,
    "normalize": False,
}


@dataclass(frozen=True)
class Preset:
    """Published settings of a recipe for one dataset and norm.

    Attributes:
        source: the paper (and where in it) the settings come from.
        params: defense parameters (``steps``, ``alpha``, ``beta``, ...).
        train: training settings, a subset of :data:`TRAIN_FIELDS`.
        eps: the epsilon the settings were published for (step sizes in ``scaled`` scale with eps / this).
        scaled: names of ``params`` that are step sizes in input units.
    """

    source: str
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    eps: float | None = None
    scaled: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.train) - set(TRAIN_FIELDS))
        if unknown:
            raise ValueError(f"preset training settings {unknown} are not among {', '.join(TRAIN_FIELDS)}")

    def for_threat(self, threat: ThreatModel) -> dict[str, Any]:
        """The defense parameters at ``threat``'s epsilon (step sizes in ``scaled`` rescaled)."""
        params = dict(self.params)
        if self.eps and threat.eps != self.eps:
            for name in self.scaled:
                if params.get(name) is not None:
                    params[name] = float(params[name]) * threat.eps / self.eps
        return params


@dataclass
class AppliedPreset:
    """What :func:`apply_preset` decided: the merged settings and what came from where (for the card)."""

    params: dict[str, Any]
    train: dict[str, Any]
    record: dict[str, Any]

    def describe(self) -> str:
        """One line for the terminal: the preset's source and the settings taken from it."""
        if not self.record.get("source"):
            return "no published preset for this dataset and norm: the defense's defaults and the loop's"
        taken = {**self.record["params"], **self.record["train"]}
        settings = ", ".join(f"{k}={v}" for k, v in taken.items()) or "nothing (all given)"
        return f"preset ({self.record['source']}): {settings}"


def find_preset(presets: dict[tuple[str, str], Preset], dataset: str, threat: ThreatModel) -> Preset | None:
    """The preset of ``presets`` for ``dataset`` (its base name, ``mnist`` for ``mnist:...``) and the threat's norm."""
    return presets.get((dataset.split(":")[0].lower(), threat.norm.value))


def apply_preset(
    presets: dict[tuple[str, str], Preset],
    dataset: str,
    threat: ThreatModel,
    params: dict[str, Any],
    train: dict[str, Any],
) -> AppliedPreset:
    """Fill the defense ``params`` and ``train`` settings the user did not give (absent or None) from the preset.

    Returns the merged settings and a record ``{"source", "dataset", "norm", "eps", "params", "train", "given"}``
    naming the settings taken from the preset and those the user gave (recorded in the model card).
    """
    given_params = {k: v for k, v in params.items() if v is not None}
    given_train = {k: v for k, v in train.items() if v is not None}
    preset = find_preset(presets, dataset, threat)
    record: dict[str, Any] = {"source": None, "dataset": dataset, "norm": threat.norm.value, "eps": threat.eps}
    if preset is None:
        record.update(params={}, train={}, given={**given_params, **given_train})
        return AppliedPreset(given_params, given_train, record)
    from_params = {k: v for k, v in preset.for_threat(threat).items() if k not in given_params}
    from_train = {k: v for k, v in preset.train.items() if k not in given_train}
    record.update(source=preset.source, params=from_params, train=from_train, given={**given_params, **given_train})
    return AppliedPreset({**from_params, **given_params}, {**from_train, **given_train}, record)
