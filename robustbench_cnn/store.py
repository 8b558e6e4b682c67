"""Checkpoint store: ``weights.safetensors`` + ``card.json`` per trained model.

A checkpoint is named ``<dataset>/<arch>-<recipe>[-<tag>]`` and lives in ``STORE/checkpoints/<name>/``.
The store root is ``--store``, else ``$RBC_HOME``, else ``~/.cache/robustbench_cnn``.

Loading is safe by construction: weights are read with safetensors (or ``torch.load(weights_only=True)``
for imported ``.pt`` state dicts), never unpickled, and the weights' sha256 must match the card.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_cnn.core.errors import ArchOptionError, CheckpointError, ShapeMismatchError
from robustbench_cnn.core.files import give_default_mode
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.models import MODELS, NormalizedModel, build_model

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
CARD_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def store_root(store: str | os.PathLike | None = None) -> Path:
    if store:
        return Path(store).expanduser()
    if os.environ.get("RBC_HOME"):
        return Path(os.environ["RBC_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "robustbench_cnn"


@dataclass
class ModelCard:
    """Everything needed to rebuild a model and to trust its weights (the config travels with them)."""

    name: str
    arch: str
    arch_kwargs: dict[str, Any]
    dataset: str
    input_shape: list[int]
    num_classes: int
    classes: list[str]
    mean: list[float]
    std: list[float]
    recipe: str = "standard"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    seed: int = 0
    clean_accuracy: float | None = None
    train_time_s: float | None = None
    threat: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_sha: str | None = None
    weights_sha256: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    card_version: int = CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f for f in cls.__dataclass_fields__}
        missing = {"name", "arch", "dataset", "input_shape", "num_classes", "mean", "std"} - set(data)
        if missing:
            raise CheckpointError(f"model card is missing fields: {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in known})


def checkpoint_name(dataset_slug: str, arch: str, recipe: str = "standard", tag: str | None = None) -> str:
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", tag):
        raise ValueError(f"invalid tag {tag!r}: use letters, digits, '_', '.' and '-' (it names a folder)")
    return f"{dataset_slug}/{arch}-{recipe}" + (f"-{tag}" if tag else "")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("robustbench-cnn", "torch", "torchvision", "numpy", "foolbox", "pyautoattack"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    """The git commit of the package source, if it is a checkout (read from .git, no subprocess)."""
    root = Path(__file__).resolve().parent.parent
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref:"):
            ref_path = root / ".git" / ref.split(" ", 1)[1]
            if ref_path.exists():
                return ref_path.read_text().strip()
            packed = root / ".git" / "packed-refs"
            for line in packed.read_text().splitlines() if packed.exists() else []:
                if line.endswith(ref.split(" ", 1)[1]):
                    return line.split(" ")[0]
            return None
        return ref
    except OSError:
        return None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        give_default_mode(tmp)  # mkstemp's 0600 -> what the umask allows (a shared store)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    model: nn.Module,
    card: ModelCard,
    store: str | os.PathLike | None = None,
    directory: str | os.PathLike | None = None,
) -> Path:
    """Write weights (safetensors) and card atomically; returns the checkpoint folder."""
    from safetensors.torch import save

    folder = Path(directory) if directory else store_root(store) / "checkpoints" / card.name
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes its metadata map in a per-process random order, so the two keys name and
    # arch gave two different files (and weights_sha256) for the same weights
    blob = save(state, metadata={"card": json.dumps({"arch": card.arch, "name": card.name}, sort_keys=True)})
    card.weights_sha256 = hashlib.sha256(blob).hexdigest()
    card.created = card.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card.versions = card.versions or package_versions()
    _atomic_write_bytes(folder / WEIGHTS_FILE, blob)
    _atomic_write_bytes(folder / CARD_FILE, card.to_json().encode())
    return folder


def update_card(folder: str | os.PathLike, card: ModelCard) -> None:
    """Rewrite only the card of the checkpoint in ``folder`` (atomically); the weights and their sha256 stay."""
    _atomic_write_bytes(Path(folder) / CARD_FILE, card.to_json().encode())


def resolve_checkpoint(name_or_path: str | os.PathLike, store: str | os.PathLike | None = None) -> Path:
    """A checkpoint folder from a store name (``mnist/lenet5-standard``) or a path to a folder/card."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file() and path.name in (CARD_FILE, WEIGHTS_FILE):
        path = path.parent
    if path.is_dir() and (path / CARD_FILE).exists():
        return path
    candidate = store_root(store) / "checkpoints" / text
    if _NAME_RE.match(text) and (candidate / CARD_FILE).exists():
        return candidate
    known = [c.name for c in list_checkpoints(store)]
    import difflib

    close = difflib.get_close_matches(text, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise CheckpointError(
        f"no checkpoint {text!r}: not a folder with {CARD_FILE} and not in the store "
        f"{store_root(store) / 'checkpoints'}.{hint}"
    )


def other_threat(folder: Path, threat: ThreatModel | str) -> str | None:
    """The threat the checkpoint in ``folder`` was trained at (``"no threat"`` for a plain model) when it is not
    ``threat``; None when they agree or the folder holds no checkpoint. One name holds one model, so a caller about
    to train or evaluate ``threat`` under that name must not take or replace another threat's model."""
    if not (folder / CARD_FILE).exists():
        return None
    stored = read_card(folder).threat
    if stored is not None and ThreatModel.parse_ball(stored) == ThreatModel.parse_ball(str(threat)):
        return None
    return stored or "no threat"


def read_card(folder: Path) -> ModelCard:
    try:
        return ModelCard.from_dict(json.loads((folder / CARD_FILE).read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise CheckpointError(f"corrupt model card {folder / CARD_FILE}: {exc}") from None


def weights_sha256(name_or_path: str | os.PathLike, store: str | os.PathLike | None = None) -> str:
    """The sha256 of a store checkpoint's weights, as its card records it (no weights are read)."""
    return read_card(resolve_checkpoint(name_or_path, store)).weights_sha256


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling: safetensors, or ``.pt`` through ``weights_only=True``."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"corrupt weights file {path}: {exc}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for unsafe or broken files
        raise CheckpointError(
            f"refusing to load {path}: not a weights-only checkpoint (corrupt, or it holds "
            f"pickled objects other than tensors; {type(exc).__name__})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def state_dict_error(exc: Exception) -> str:
    """The first offending line of torch's multi-line ``load_state_dict`` error (a missing or unexpected key,
    or a size mismatch), with a count of the other problems; the first line if none is recognised."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    details = [ln for ln in lines if ln.startswith(("Missing key", "Unexpected key", "size mismatch"))]
    if not details:
        return lines[0] if lines else type(exc).__name__
    more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
    return details[0].rstrip(". ") + more


def model_from_card(card: ModelCard) -> NormalizedModel:
    """The untrained architecture a card describes; bad ``arch_kwargs`` raise :class:`ArchOptionError`."""
    if card.arch not in MODELS:
        raise CheckpointError(f"checkpoint {card.name!r} needs unknown architecture {card.arch!r}")
    if not isinstance(card.arch_kwargs, dict):
        raise ArchOptionError(
            f"checkpoint {card.name!r}: arch_kwargs must be a mapping, got {type(card.arch_kwargs).__name__}"
        )
    channels, size = card.input_shape[0], card.input_shape[-1]
    try:
        return build_model(
            card.arch,
            in_channels=channels,
            num_classes=card.num_classes,
            input_size=size,
            mean=card.mean,
            std=card.std,
            **card.arch_kwargs,
        )
    except ArchOptionError as exc:
        raise ArchOptionError(f"checkpoint {card.name!r}: {exc}") from None


def load_checkpoint(
    name_or_path: str | os.PathLike, store: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[NormalizedModel, ModelCard]:
    """Load a checkpoint by store name or path: sha256 checked against the card, weights via safetensors."""
    folder = resolve_checkpoint(name_or_path, store)
    card = read_card(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise CheckpointError(f"checkpoint {card.name!r} has no {WEIGHTS_FILE} in {folder}")
    actual = sha256_file(weights)
    if actual != card.weights_sha256:
        raise CheckpointError(
            f"checkpoint {card.name!r} is corrupt or was modified: sha256 of {weights} is "
            f"{actual[:12]}..., the card says {card.weights_sha256[:12]}..."
        )
    state = load_state_dict_file(weights)
    model = model_from_card(card)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights of {card.name!r} do not fit architecture {card.arch!r}: {state_dict_error(exc)}"
        ) from None
    return model.to(device).eval(), card


def list_checkpoints(store: str | os.PathLike | None = None) -> list[ModelCard]:
    """Cards of every checkpoint in the store (unreadable ones are skipped), sorted by name."""
    root = store_root(store) / "checkpoints"
    cards = []
    for card_file in sorted(root.glob(f"*/*/{CARD_FILE}")) if root.exists() else []:
        try:
            cards.append(read_card(card_file.parent))
        except CheckpointError:
            continue
    return sorted(cards, key=lambda c: c.name)


def check_compatible(card: ModelCard, channels: int, size: int, dataset: str) -> None:
    """Refuse a dataset whose channels or image size differ from what the checkpoint was trained on."""
    if card.input_shape[0] != channels:
        raise ShapeMismatchError(
            f"checkpoint {card.name!r} expects {card.input_shape[0]}-channel input, "
            f"but dataset {dataset!r} has {channels} channel(s)"
        )
    if card.input_shape[-1] != size:
        raise ShapeMismatchError(
            f"checkpoint {card.name!r} expects {card.input_shape[-1]}x{card.input_shape[-1]} "
            f"images, but dataset {dataset!r} has {size}x{size}"
        )
