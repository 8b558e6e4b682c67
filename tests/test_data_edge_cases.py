"""Data, bring-your-own-model and baseline edge cases found by a review: ImageFolder labels agree between splits,
16-bit and corrupt images, .gz-only MNIST, --weights without --model-def, model files with dataclasses, user-code
errors in the input check, baselines from concatenated tables or a folder. Each test failed on the code before the
fix."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_cnn.core.errors import DataNotFoundError, RbcError, ShapeMismatchError
from robustbench_cnn.data import is_available, load_split


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ---------------------------------------------------------------------------------------------- data.py


def test_imagefolder_labels_agree_between_splits_when_test_lacks_a_class(tmp_path) -> None:
    """train/ has cat, dog, fish; test/ has cat, fish: a test fish must be label 2 (as in train), not 1 (dog)."""
    for split, classes in (("train", ["cat", "dog", "fish"]), ("test", ["cat", "fish"])):
        for k, cls in enumerate(classes):
            _png(tmp_path / split / cls / "0.png", np.full((4, 4, 3), 40 * (k + 1), np.uint8))
    name = f"imagefolder:{tmp_path}"
    train, test = load_split(name, "train"), load_split(name, "test")
    assert train.info.classes == ("cat", "dog", "fish")
    assert train.y.tolist() == [0, 1, 2]
    assert test.y.tolist() == [0, 2]


def test_imagefolder_test_class_unknown_to_train_is_an_error(tmp_path) -> None:
    for split, classes in (("train", ["a", "b"]), ("test", ["a", "c"])):
        for cls in classes:
            _png(tmp_path / split / cls / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(RbcError, match="c"):
        load_split(f"imagefolder:{tmp_path}", "test")


def test_imagefolder_16bit_grey_is_scaled_not_saturated(tmp_path) -> None:
    for split in ("train", "test"):
        _png(tmp_path / split / "a" / "0.png", np.full((4, 4), 30000, np.uint16))  # PIL mode I;16
    s = load_split(f"imagefolder:{tmp_path}", "test")
    assert s.info.channels == 1 and s.x.shape == (1, 1, 4, 4)
    assert float(s.x.max()) == pytest.approx(30000 / 65535, abs=1 / 255)


def test_imagefolder_corrupt_image_is_a_one_line_error(tmp_path) -> None:
    for split in ("train", "test"):
        _png(tmp_path / split / "a" / "0.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "test" / "a" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(RbcError, match="1.jpg"):
        load_split(f"imagefolder:{tmp_path}", "test")


def test_mnist_gz_only_is_not_reported_available(tmp_path, monkeypatch) -> None:
    """torchvision reads only the uncompressed IDX files: .gz alone must not count as available offline."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(raw / f"{f}.gz", "wb") as fh:
            fh.write(b"\0" * 16)
    monkeypatch.setenv("RBC_OFFLINE", "1")
    assert not is_available("mnist", tmp_path)
    with pytest.raises(DataNotFoundError) as info:
        load_split("mnist", "test", n=2, data_dir=tmp_path)
    assert "download failed" not in str(info.value) and str(tmp_path / "MNIST") in str(info.value)


# ---------------------------------------------------------------------------------------------- byom.py

_DATACLASS_MODEL = """
from __future__ import annotations
from dataclasses import dataclass
from torch import nn

@dataclass
class Cfg:
    classes: int = 10

def factory():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, Cfg().classes))
"""

_ASSERTING_MODEL = """
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        assert x.shape[1] == 1, "expects grey 8x8 images"
        return self.fc(x.flatten(1))

def factory():
    return Net()
"""


def test_model_def_file_with_a_dataclass_imports(tmp_path) -> None:
    from robustbench_cnn.byom import load_model_def

    path = tmp_path / "dc_model.py"
    path.write_text(_DATACLASS_MODEL)
    model, sha = load_model_def(f"{path}:factory", None, torch.device("cpu"))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10) and sha == ""


def test_check_input_turns_any_forward_error_into_a_shape_error(tmp_path) -> None:
    from robustbench_cnn.byom import check_input, load_model_def

    path = tmp_path / "assert_model.py"
    path.write_text(_ASSERTING_MODEL)
    model, _ = load_model_def(f"{path}:factory", None, torch.device("cpu"))
    with pytest.raises(ShapeMismatchError, match="expects grey"):
        check_input(model, torch.rand(2, 3, 8, 8), "assert_model", "digits", num_classes=10)


# ---------------------------------------------------------------------------------------------- cli.py


def test_weights_without_model_def_is_rejected_not_ignored(tmp_path, monkeypatch) -> None:
    """`--weights` with a store `--model` was silently ignored: the store checkpoint got evaluated instead."""
    import robustbench_cnn.pipeline.workflows as runner
    from cli import main

    def no_run(*args, **kwargs):
        raise AssertionError("ran an evaluation that ignores --weights")

    monkeypatch.setattr(runner, "run_cells", no_run)
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"x")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "-m",
            "digits/whatever",
            "--weights",
            str(weights),
            "-t",
            "linf:0.1",
            "-n",
            "4",
            "--no-progress",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--model-def" in result.output


# ---------------------------------------------------------------------------------------------- regress.py


def test_update_baseline_with_a_non_unique_index_writes_each_cell_once(tmp_path) -> None:
    import pandas as pd
    from report_fixtures import summary, three_models

    from robustbench_cnn.reporting.regress import compare, load_baseline, update_baseline

    cells = three_models()
    current = pd.concat([summary(cells[0]), summary(cells[1])])  # index 0..5, 0..5
    path = update_baseline(current, tmp_path / "baseline.parquet")
    baseline = load_baseline(path)
    assert len(baseline) == len(current)
    assert compare(baseline, current).passed


def test_regress_update_into_a_run_folder_is_a_one_line_error(tmp_path) -> None:
    from report_fixtures import three_models, write_run

    from cli import main

    base = write_run(tmp_path / "run-a", *three_models())
    cur = write_run(tmp_path / "run-b", *three_models())
    result = CliRunner().invoke(main, ["regress", "--update", "-b", str(base), "-c", str(cur)])
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert "Error:" in result.output
