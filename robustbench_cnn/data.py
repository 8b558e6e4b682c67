"""Datasets by name -> float tensors in [0, 1], N x C x H x W, with int64 labels.

Names: ``digits`` (scikit-learn's bundled 8x8 digits; the embedded default, needs no files),
``mnist``, ``fashion-mnist``, ``cifar10`` (torchvision classes, downloaded into the data root when
online) and ``imagefolder:PATH`` (any ImageFolder tree with ``train/`` and ``test/``).

The data root is ``--data-dir``, else ``$RBC_DATA_DIR``, else ``~/.cache/robustbench_cnn/data``.
Set ``RBC_OFFLINE=1`` to never try a download. Missing data raises :class:`DataNotFoundError` naming
the dataset, the path looked at and how to provide it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustbench_cnn.core.errors import DataNotFoundError, RbcError
from robustbench_cnn.core.registry import Registry

SPLITS = ("train", "test")
#: The fixed seed of the digits train/test split and of the ``n``-sample selection.
SPLIT_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before seeing any image."""

    name: str
    channels: int
    size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def slug(self) -> str:
        """A file-system friendly name (``imagefolder:/a/cifar10-jpeg`` -> ``cifar10-jpeg``)."""
        if self.name.startswith("imagefolder:"):
            return Path(self.name.split(":", 1)[1]).resolve().name or "imagefolder"
        return self.name


@dataclass
class Split:
    """One split of a dataset: images ``x`` in [0, 1] (float32), labels ``y`` (int64), source indices."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    info: DatasetInfo
    split: str

    def __len__(self) -> int:
        return int(self.y.numel())


Loader = Callable[[str, Path], tuple[np.ndarray, np.ndarray]]
DATASETS: Registry[Callable[[], DatasetSpec]] = Registry("dataset")


@dataclass(frozen=True)
class DatasetSpec:
    info: DatasetInfo
    load: Callable[[str, Path], tuple[torch.Tensor, torch.Tensor]]
    available: Callable[[Path], bool]
    expected_path: Callable[[Path], Path]


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder datasets are read from (and downloaded into when online)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("RBC_DATA_DIR"):
        return Path(os.environ["RBC_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "robustbench_cnn" / "data"


def offline() -> bool:
    return os.environ.get("RBC_OFFLINE", "").lower() in {"1", "true", "yes"}


# --- digits (embedded) -------------------------------------------------------------------------


def _load_digits(split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # values 0..16 -> [0, 1]
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=0.25, random_state=SPLIT_SEED, stratify=labels)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    return torch.from_numpy(images[chosen]).unsqueeze(1), torch.from_numpy(labels[chosen])


@DATASETS.register("digits")
def _digits() -> DatasetSpec:
    """scikit-learn's 8x8 handwritten digits (1,797 images), fixed stratified 75/25 split (seed 0)."""
    info = DatasetInfo("digits", 1, 8, tuple(str(i) for i in range(10)), (0.3052,), (0.3840,), "scikit-learn")
    return DatasetSpec(info, _load_digits, lambda root: True, lambda root: Path("<bundled with scikit-learn>"))


# --- torchvision datasets -------------------------------------------------------------------------


def _torchvision_spec(
    name: str,
    cls_name: str,
    folder: str,
    channels: int,
    size: int,
    classes: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    marker: Callable[[Path], bool],
) -> DatasetSpec:
    def expected(root: Path) -> Path:
        return root / folder

    def load(split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        download = not marker(root) and not offline()
        if not marker(root) and not download:
            raise _missing(name, expected(root))
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            ds = cls(str(root), train=(split == "train"), download=download)
        except Exception as exc:  # network errors come in many types; all mean "not available"
            raise _missing(name, expected(root), reason=_download_reason(exc, download=download)) from None
        finally:
            socket.setdefaulttimeout(old_timeout)
        data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        x = torch.from_numpy(np.ascontiguousarray(data)).float().div_(255.0)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    info = DatasetInfo(name, channels, size, classes, mean, std, f"torchvision.datasets.{cls_name}")
    return DatasetSpec(info, load, marker, expected)


def _download_reason(exc: BaseException, limit: int = 160, download: bool = True) -> str:
    """One line from a (multi-line) download error: its last non-empty line, which names the cause
    (torchvision's message starts with "Error downloading ...:" and ends with the URL error)."""
    lines = [" ".join(ln.split()) for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    what = "download failed" if download else "the local files could not be read"
    return f"{what}: {type(exc).__name__}: {text}" if text else f"{what}: {type(exc).__name__}"


def _idx_files_present(folder: str) -> Callable[[Path], bool]:
    def present(root: Path) -> bool:
        raw = root / folder / "raw"
        # torchvision reads the uncompressed files only (a .gz alone is extracted by a download, not offline)
        return all(
            (raw / f).exists()
            for f in (
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            )
        )

    return present


@DATASETS.register("mnist")
def _mnist() -> DatasetSpec:
    """MNIST (LeCun et al. 1998): 60k/10k 28x28 grey digits, torchvision layout ``ROOT/MNIST/raw``."""
    return _torchvision_spec(
        "mnist",
        "MNIST",
        "MNIST",
        1,
        28,
        tuple(str(i) for i in range(10)),
        (0.1307,),
        (0.3081,),
        _idx_files_present("MNIST"),
    )


@DATASETS.register("fashion-mnist")
def _fashion() -> DatasetSpec:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images, ``ROOT/FashionMNIST/raw``."""
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    return _torchvision_spec(
        "fashion-mnist",
        "FashionMNIST",
        "FashionMNIST",
        1,
        28,
        classes,
        (0.2860,),
        (0.3530,),
        _idx_files_present("FashionMNIST"),
    )


@DATASETS.register("cifar10")
def _cifar10() -> DatasetSpec:
    """CIFAR-10 (Krizhevsky 2009): 50k/10k 32x32 RGB, ``ROOT/cifar-10-batches-py``."""
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    return _torchvision_spec(
        "cifar10",
        "CIFAR10",
        "cifar-10-batches-py",
        3,
        32,
        classes,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        lambda root: (root / "cifar-10-batches-py" / "data_batch_1").exists(),
    )


# --- imagefolder:PATH -----------------------------------------------------------------------------

_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _imagefolder_files(root: Path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """Files and labels of a split; class indices always come from ``train/`` so both splits agree."""
    classes = _class_dirs(root / "train")
    split_dir = root / split
    present = _class_dirs(split_dir)
    extra = sorted(set(present) - set(classes))
    if extra:
        raise RbcError(
            f"imagefolder {root}: {split}/ has class folders that train/ lacks ({', '.join(extra)}); "
            f"both splits must use the same class names"
        )
    files: list[Path] = []
    labels: list[int] = []
    for cls in present:
        label = classes.index(cls)
        for f in sorted((split_dir / cls).iterdir()):
            if f.suffix.lower() in _IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(label)
    return files, labels, classes


_GREY_MODES = {"L", "1", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def _read_image(path: Path, mode: str, size: int) -> np.ndarray:
    """One image as uint8 H x W (x 3), 16-bit images scaled (PIL's own conversion saturates them)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16") or img.mode in {"I", "F"}:
                arr = np.asarray(img).astype(np.float64)
                if img.mode in {"I", "F"} and arr.max(initial=0) > 65535:
                    raise RbcError(f"image {path}: unsupported {img.mode} pixel range up to {arr.max():g}")
                if img.mode.startswith("I;16") or arr.max(initial=0) > 255:  # 16-bit: 0..65535 -> 0..255
                    arr = arr / 257.0
                img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
            return np.asarray(img.convert(mode).resize((size, size)), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise RbcError(f"unreadable image {path}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None


def _imagefolder_spec(name: str, root_override: Path | None = None) -> DatasetSpec:
    path_text = name.split(":", 1)[1]
    if not path_text:
        raise ValueError("imagefolder needs a path: imagefolder:PATH (a folder with train/ and test/)")
    folder = Path(path_text).expanduser()

    def resolve(root: Path) -> Path:
        return folder if folder.is_absolute() or folder.exists() else root / folder

    def available(root: Path) -> bool:
        base = resolve(root)
        return all((base / s).is_dir() for s in SPLITS)

    def load(split: str, root: Path, indices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        base = resolve(root)
        if not available(root):
            raise _missing(
                name, base, how="point imagefolder: at a folder that holds train/<class>/*.jpg and test/<class>/*.jpg"
            )
        files, labels, _ = _imagefolder_files(base, split)
        chosen = range(len(files)) if indices is None else indices
        mode = "L" if info.channels == 1 else "RGB"
        arrays = [_read_image(files[i], mode, info.size) for i in chosen]
        x = torch.from_numpy(np.stack(arrays)).float().div_(255.0)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor([labels[i] for i in chosen], dtype=torch.int64)

    base = resolve(root_override or data_root())
    if (base / "train").is_dir():
        files, _, classes = _imagefolder_files(base, "train")
        if not files:
            raise _missing(name, base / "train", how="the folder holds no images")
        from PIL import Image

        try:
            with Image.open(files[0]) as first:
                channels = 1 if first.mode in _GREY_MODES else 3
                size = max(first.size)
        except OSError as exc:
            raise RbcError(f"unreadable image {files[0]}: {type(exc).__name__}: {exc}") from None
    else:
        channels, size, classes = 3, 32, []
    # Normalization for arbitrary folders: the mid-point (a user's checkpoint card may override it).
    info = DatasetInfo(name, channels, size, tuple(classes), (0.5,) * channels, (0.5,) * channels, "ImageFolder")
    return DatasetSpec(info, load, available, resolve)


# --- public API -----------------------------------------------------------------------------------


def _missing(name: str, path: Path, reason: str = "", how: str = "") -> DataNotFoundError:
    how = how or (
        "put the files there (torchvision layout), or point --data-dir / RBC_DATA_DIR at a folder "
        "that holds them; when online, they are downloaded into the data root"
    )
    why = f" ({reason})" if reason else ""
    return DataNotFoundError(f"dataset {name!r} is not available locally: looked in {path}{why}; {how}")


def get_spec(name: str, data_dir: str | os.PathLike | None = None) -> DatasetSpec:
    """The spec of a dataset by name; ``imagefolder:PATH`` is resolved against the data root."""
    if name.startswith("imagefolder:"):
        return _imagefolder_spec(name, data_root(data_dir))
    return DATASETS.get(name)()


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> DatasetInfo:
    """Shape, classes and normalization of a dataset, without loading its images."""
    return get_spec(name, data_dir).info


def is_available(name: str, data_dir: str | os.PathLike | None = None) -> bool:
    return get_spec(name, data_dir).available(data_root(data_dir))


def select_indices(total: int, n: int | None, seed: int = SPLIT_SEED) -> np.ndarray:
    """The first ``n`` of a seeded permutation of ``range(total)`` (all, in order, when n is None)."""
    if n is None or n >= total:
        return np.arange(total)
    if n <= 0:
        raise ValueError(f"invalid sample count {n}: must be > 0")
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def load_split(
    name: str,
    split: str = "test",
    *,
    n: int | None = None,
    seed: int = SPLIT_SEED,
    data_dir: str | os.PathLike | None = None,
) -> Split:
    """Load a split as tensors in [0, 1]; ``n`` picks a fixed seeded subset (class-mixed, reproducible)."""
    if split not in SPLITS:
        raise ValueError(f"invalid split {split!r}: use train or test")
    spec = get_spec(name, data_dir)
    root = data_root(data_dir)
    if not spec.available(root) and (offline() or name.startswith("imagefolder:")):
        raise _missing(name, spec.expected_path(root))
    if name.startswith("imagefolder:") and n is not None:
        files, _, _ = _imagefolder_files(spec.expected_path(root), split)
        idx = select_indices(len(files), n, seed)
        x, y = spec.load(split, root, idx)  # type: ignore[call-arg]  # decode only what is needed
        return Split(x, y, torch.from_numpy(idx), spec.info, split)
    x, y = spec.load(split, root)
    idx = select_indices(len(y), n, seed)
    sel = torch.from_numpy(idx)
    if len(idx) != len(y):
        x, y = x[sel], y[sel]
    return Split(x.contiguous(), y.contiguous(), sel, spec.info, split)


def list_datasets(data_dir: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """One row per registered dataset: name, shape, classes, availability and where it is looked for."""
    root = data_root(data_dir)
    rows = []
    for name in DATASETS:
        spec = DATASETS.get(name)()
        rows.append(
            {
                "name": name,
                "shape": "x".join(map(str, spec.info.input_shape)),
                "classes": spec.info.num_classes,
                "available": spec.available(root),
                "path": str(spec.expected_path(root)),
                "source": spec.info.source,
            }
        )
    rows.append(
        {
            "name": "imagefolder:PATH",
            "shape": "from files",
            "classes": "from folders",
            "available": "-",
            "path": "PATH/{train,test}/<class>/*",
            "source": "ImageFolder",
        }
    )
    return rows
