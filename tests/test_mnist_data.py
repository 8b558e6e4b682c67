"""Training on the real shared data: LeNet-5 learns MNIST, ResNet-18 trains on the CIFAR-10 JPEG folder.

One torch thread (set in conftest). Skipped, with the reason, when ``$RBC_DATA_DIR`` (or ``../shared/data``)
lacks the dataset.
"""

from __future__ import annotations

import math

import pytest
from conftest import shared_data_or_skip

from robustbench_cnn.store import read_card
from robustbench_cnn.training import TrainConfig
from robustbench_cnn.workflows import train_model

pytestmark = pytest.mark.data


def test_lenet5_learns_mnist_in_one_epoch_on_10k_images(store) -> None:
    data_dir = shared_data_or_skip("MNIST", "raw").parent.parent
    # One epoch over 10k images is 313 steps at batch 32. Measured (seed 0 / 1): 0.966 / 0.970 test accuracy on
    # the 2,000 test images; with the MNIST defaults (adam, batch 128: 79 steps) 0.92. Chance is 0.10, and a
    # broken loop (no optimizer step, wrong labels, un-normalized input, lr schedule stuck at 0) stays far below
    # 0.95, so the threshold leaves room for platform noise without letting a regression through.
    config = TrainConfig.for_dataset("mnist", epochs=1, batch_size=32, optimizer="sgd", lr=0.05, device="cpu")
    trained = train_model("lenet5", "mnist", config, subset=10_000, eval_n=2_000, data_dir=data_dir, progress=False)
    assert trained.card.extra["train_size"] == 10_000 and trained.card.extra["test_size"] == 2_000
    assert trained.test_accuracy >= 0.95, f"lenet5 reached only {trained.test_accuracy:.4f} on MNIST"
    assert trained.card.clean_accuracy == trained.test_accuracy
    assert trained.card.input_shape == [1, 28, 28] and trained.card.num_classes == 10


@pytest.mark.slow
def test_resnet18_trains_one_epoch_on_cifar10_jpeg(store) -> None:
    root = shared_data_or_skip("cifar10-jpeg")
    config = TrainConfig.for_dataset("imagefolder", epochs=1, device="cpu")
    trained = train_model("resnet18", f"imagefolder:{root}", config, subset=256, eval_n=64, progress=False)
    assert [e.epoch for e in trained.result.epochs] == [1] and math.isfinite(trained.result.epochs[0].loss)
    card = read_card(trained.folder)  # what was written to disk, not the in-memory object
    assert card.name == "cifar10-jpeg/resnet18-standard" and card.arch == "resnet18"
    assert card.input_shape == [3, 32, 32] and card.num_classes == 10
    assert card.classes[0] == "airplane" and card.extra["train_size"] == 256
    assert 0.0 <= card.clean_accuracy <= 1.0
