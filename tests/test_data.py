"""Datasets: shapes, ranges, determinism, availability and clear errors when files are missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_data_or_skip

from robustbench_cnn.core.errors import DataNotFoundError, UnknownNameError
from robustbench_cnn.data import dataset_info, list_datasets, load_split, select_indices


def test_digits_is_embedded_with_a_fixed_split() -> None:
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert train.x.shape == (1347, 1, 8, 8) and test.x.shape == (450, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) <= 1.0 and float(train.x.max()) > 0.9
    assert set(test.y.tolist()) == set(range(10))
    again = load_split("digits", "test")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)


def test_n_selects_a_seeded_class_mixed_subset() -> None:
    sub = load_split("digits", "test", n=100)
    assert len(sub) == 100 and len(set(sub.y.tolist())) == 10
    full = load_split("digits", "test")
    assert torch.equal(full.x[sub.index], sub.x)
    assert np.array_equal(select_indices(450, 100), select_indices(450, 100))
    with pytest.raises(ValueError, match="must be > 0"):
        select_indices(10, 0)


def test_unknown_dataset_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean: mnist"):
        dataset_info("mnsit")


def test_missing_data_offline_names_the_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RBC_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match=f"'mnist' is not available locally: looked in {tmp_path}"):
        load_split("mnist", "test", data_dir=tmp_path)
    with pytest.raises(DataNotFoundError, match="looked in"):
        load_split(f"imagefolder:{tmp_path / 'nothing'}", "test")


def test_imagefolder_reads_a_tree(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    name = f"imagefolder:{tmp_path}"
    info = dataset_info(name)
    assert info.input_shape == (3, 16, 16) and info.classes == ("cat", "dog")
    split = load_split(name, "test")
    assert split.x.shape == (6, 3, 16, 16) and split.y.tolist() == [0, 0, 0, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "test" / "cat" / "0.png"), dtype=np.float32) / 255
    assert torch.allclose(split.x[0].permute(1, 2, 0), torch.from_numpy(first))
    assert len(load_split(name, "train", n=4)) == 4


def test_list_datasets_reports_availability(tmp_path) -> None:
    rows = {r["name"]: r for r in list_datasets(tmp_path)}
    assert rows["digits"]["available"] is True and rows["mnist"]["available"] is False
    assert rows["mnist"]["shape"] == "1x28x28" and rows["cifar10"]["shape"] == "3x32x32"


@pytest.mark.data
def test_shared_mnist_is_exact() -> None:
    root = shared_data_or_skip("MNIST", "raw")
    test = load_split("mnist", "test", data_dir=root.parent.parent)
    assert test.x.shape == (10000, 1, 28, 28)
    assert test.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the famous first ten test labels
    assert abs(float(test.x.mean()) - 0.1325) < 1e-3


@pytest.mark.data
def test_shared_cifar10_jpeg_as_imagefolder() -> None:
    root = shared_data_or_skip("cifar10-jpeg")
    split = load_split(f"imagefolder:{root}", "test", n=50)
    assert split.x.shape == (50, 3, 32, 32) and split.info.num_classes == 10
    assert split.info.classes[0] == "airplane" and len(set(split.y.tolist())) > 5
