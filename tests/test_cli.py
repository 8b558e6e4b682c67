"""The rbc CLI through click's CliRunner: the train -> list flow and the error table (one line, exit 2)."""

from __future__ import annotations

from cli_helpers import assert_one_line_error
from click.testing import CliRunner

from cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_train_then_list(store) -> None:
    result = run("train", "--model", "lenet5", "--epochs", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "digits/lenet5-standard" in result.output
    listed = run("models", "list")
    assert "digits/lenet5-standard" in listed.output and "wide_resnet" in listed.output
    assert (store / "checkpoints" / "digits" / "lenet5-standard" / "card.json").exists()


def test_unknown_model_suggests(store) -> None:
    assert_one_line_error(run("train", "--model", "resnet19"), "Did you mean: resnet18")


def test_unknown_dataset_suggests(store) -> None:
    assert_one_line_error(run("train", "--model", "lenet5", "--dataset", "digit"), "Did you mean: digits")


def test_missing_data_offline(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RBC_OFFLINE", "1")
    result = run("train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert_one_line_error(result, f"looked in {tmp_path / 'MNIST'}")


def test_bad_device(store) -> None:
    assert_one_line_error(run("train", "--model", "lenet5", "--device", "tpu"), "invalid device 'tpu'")


def test_channel_mismatch_between_checkpoint_and_dataset(store, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    assert run("train", "--model", "lenet5", "--epochs", "1", "--no-progress").exit_code == 0
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / split / "a" / "0.png")
    result = run(
        "train",
        "--model",
        "lenet5",
        "--dataset",
        f"imagefolder:{tmp_path}",
        "--init-from",
        "digits/lenet5-standard",
        "--freeze",
        "features",
    )
    assert_one_line_error(result, "expects 1-channel input")


def test_freeze_needs_init_from(store) -> None:
    assert_one_line_error(run("train", "--model", "lenet5", "--freeze", "features"), "needs --init-from")


def test_data_list_shows_digits() -> None:
    result = run("data", "list")
    assert result.exit_code == 0 and "digits" in result.output and "1x8x8" in result.output
