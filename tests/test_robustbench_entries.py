"""RobustBench in and out: model_info entries (export, import as external rows) and RobustBench-format checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustbench_cnn.core.errors import CheckpointError, RbcError, ShapeMismatchError
from robustbench_cnn.data import dataset_info
from robustbench_cnn.models import build_model
from robustbench_cnn.reporting.robustbench_entries import (
    MODEL_INFO_FIELDS,
    export_corruption_entries,
    export_entries,
    read_model_info,
    reference_rows,
    write_model_info,
)
from robustbench_cnn.robustbench_format import load_robustbench_checkpoint, read_robustbench_state
from robustbench_cnn.store import ModelCard, load_checkpoint, save_checkpoint, sha256_file


def _card(name: str, recipe: str) -> ModelCard:
    return ModelCard(name, "lenet5", {}, "digits", [1, 8, 8], 10, [str(i) for i in range(10)], [0.0], [1.0], recipe)


def _summary() -> pd.DataFrame:
    """A run's summary rows: 2 models x (eps 0, 0.1, 8/255) x a 2-attack cascade with its worst-case row."""
    rows = []
    for model, clean, robust, flags in (
        ("digits/lenet5-standard", 0.97333, [0.97333, 0.41, 0.2066], ""),
        ("digits/lenet5-pgd-at", 0.90, [0.90, 0.7711, 0.80125], "non-monotone;eot"),
    ):
        for eps, acc in zip((0.0, 0.1, 8 / 255), robust):
            for attack, value in (("pgd", acc + 0.01), ("fgsm", acc), ("worst-case", acc)):
                rows.append(
                    {
                        "model": model,
                        "dataset": "digits",
                        "arch": "lenet5",
                        "suite": "quick",
                        "attack": attack,
                        "norm": "linf",
                        "eps": eps,
                        "clean_acc": clean,
                        "robust_acc": value,
                        "n": 300,
                        "seed": 0,
                        "flags": flags,
                    }
                )
    rows.append({**rows[-1], "norm": "l1", "eps": 5.0})  # no RobustBench leaderboard for l1: left out
    return pd.DataFrame(rows)


def test_model_info_round_trip_gives_the_same_figures(tmp_path: Path) -> None:
    summary = _summary()
    cards = {"digits/lenet5-pgd-at": _card("digits/lenet5-pgd-at", "pgd-at")}
    infos = export_entries(summary, cards, overrides={"digits/lenet5-standard": {"venue": "ours", "link": "x"}})
    assert len(infos) == 4  # 2 models x 2 positive linf epsilons
    for info in infos:
        assert info.threat_model == "Linf" and info.dataset == "digits"
        assert list(info.entry)[: len(MODEL_INFO_FIELDS) - 1] == [f for f in MODEL_INFO_FIELDS if f != "external"]
        assert "not from AutoAttack" in info.entry["footnote"] and "suite quick" in info.entry["footnote"]
    by_key = {i.key: i.entry for i in infos}
    std = by_key["digits_lenet5-standard_linf_8-255"]
    assert std["eps"] == "8/255" and std["clean_acc"] == "97.33" and std["autoattack_acc"] == "20.66"
    assert std["venue"] == "ours" and std["unreliable"] is False
    at = by_key["digits_lenet5-pgd-at_linf_0.1"]
    assert at["architecture"] == "lenet5" and at["unreliable"] is True  # non-monotone is a masking sign
    assert "pgd-at" in at["name"] and "flags: eot, non-monotone" in at["footnote"]

    paths = write_model_info(infos, tmp_path / "model_info")
    assert all(p.parent.parent.parent == tmp_path / "model_info" for p in paths)
    assert json.loads(paths[0].read_text()) == infos[0].entry
    refs = reference_rows(read_model_info(tmp_path / "model_info"))
    assert len(refs) == 4 and refs["external"].all() and (refs["source"] == "robustbench").all()
    # the same figures: the worst case per cell (the lowest cumulative robust accuracy), to the 2 decimals
    # RobustBench's percent text keeps
    expected = (
        summary[(summary["norm"] == "linf") & (summary["eps"] > 0)]
        .groupby(["model", "eps"])
        .agg(clean=("clean_acc", "first"), robust=("robust_acc", "min"))
    )
    for _, row in refs.iterrows():
        model = "digits/" + row["model"].split("_")[1]
        want = expected.loc[(model, row["eps"])]  # eps text "0.1" / "8/255" parses back to the same float
        assert row["clean_acc"] == round(want["clean"] * 100, 2) / 100
        assert row["robust_acc"] == round(want["robust"] * 100, 2) / 100
        assert row["norm"] == "linf" and math.isnan(row["external_eval_acc"])


def test_robustbench_files_and_corruption_entries_import(tmp_path: Path) -> None:
    root = tmp_path / "model_info"
    (root / "cifar10" / "Linf").mkdir(parents=True)
    (root / "cifar10" / "corruptions").mkdir(parents=True)
    theirs = {
        "link": "https://arxiv.org/abs/2001.03994",
        "name": "Fast is better than free",
        "authors": "Eric Wong, Leslie Rice, J. Zico Kolter",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": "cifar10",
        "venue": "ICLR 2020",
        "architecture": "ResNet-18",
        "eps": "8/255",
        "clean_acc": "83.34",
        "reported": "46.06",
        "autoattack_acc": "43.21",
        "external": "42.00",
        "unreliable": False,
    }
    (root / "cifar10" / "Linf" / "Wong2020Fast.json").write_text(json.dumps(theirs))
    records = [
        {"model": "m", "benchmark": "cifar10-c", "corruption": "fog", "severity": 1, "accuracy": 0.5},
        {
            "model": "m",
            "benchmark": "cifar10-c",
            "corruption": "mean",
            "severity": 0,
            "accuracy": 0.61234,
            "clean_accuracy": 0.9,
            "n": 100,
            "seed": 0,
            "benchmark_mean": True,
        },
    ]
    write_model_info(export_corruption_entries(records, dataset="cifar10"), root)
    refs = reference_rows(read_model_info(root)).set_index("model")
    wong = refs.loc["Wong2020Fast"]
    assert wong["eps"] == pytest.approx(8 / 255) and wong["robust_acc"] == pytest.approx(0.4321)
    assert wong["reported_acc"] == pytest.approx(0.4606) and wong["external_eval_acc"] == pytest.approx(0.42)
    assert bool(wong["external"]) and wong["threat_model"] == "Linf"
    corr = refs.loc["m_cifar10-c"]
    assert corr["threat_model"] == "corruptions" and math.isnan(corr["eps"]) and pd.isna(corr["norm"])
    assert corr["robust_acc"] == pytest.approx(0.6123) and corr["clean_acc"] == pytest.approx(0.9)
    (root / "cifar10" / "Linf" / "broken.json").write_text("{not json")
    with pytest.raises(RbcError, match=r"broken.json: not a JSON model_info entry"):
        read_model_info(root)


def _digits_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    info = dataset_info("digits")
    return build_model("lenet5", in_channels=1, num_classes=info.num_classes, input_size=info.size).eval()


def test_robustbench_layout_loads_into_the_registry_architecture(tmp_path: Path) -> None:
    model = _digits_model()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # RobustBench's layout: the bare network's weights, DataParallel's "module." prefix, wrapped with metadata
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.net.state_dict().items()}, "epoch": 3, "acc": 0.9}
    path = tmp_path / "Someone2024Robust.pt"
    torch.save(wrapped, path)
    loaded, card = load_robustbench_checkpoint(path, "lenet5", "digits", sha256=sha256_file(path))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert card.weights_sha256 == sha256_file(path) and card.extra["layout"] == "raw"
    assert card.name == "digits/lenet5-robustbench-Someone2024Robust"
    # "model." prefixes and safetensors files too; our own NormalizedModel layout keeps its mean/std
    from safetensors.torch import save_file

    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    again, card2 = load_robustbench_checkpoint(tmp_path / "w.safetensors", "lenet5", "digits")
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert card2.extra["layout"] == "normalized"
    # the card puts it into the store like any trained model
    folder = save_checkpoint(loaded, card, store=tmp_path / "store")
    stored, _ = load_checkpoint(str(folder))
    with torch.no_grad():
        assert torch.equal(stored(x), model(x))


def test_bad_robustbench_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    model = _digits_model()
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.net.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"corrupt or was modified: sha256 is"):
        load_robustbench_checkpoint(path, "lenet5", "digits", sha256="0" * 64)
    with pytest.raises(ShapeMismatchError, match=r"expects 1-channel input, but dataset 'imagefolder:.*' has 3"):
        (tmp_path / "rgb" / "test" / "a").mkdir(parents=True)
        (tmp_path / "rgb" / "train" / "a").mkdir(parents=True)
        from PIL import Image

        for split in ("train", "test"):
            Image.new("RGB", (8, 8)).save(tmp_path / "rgb" / split / "a" / "0.png")
        load_robustbench_checkpoint(path, "lenet5", f"imagefolder:{tmp_path / 'rgb'}")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"module.fc.weight": torch.zeros(3, 3)}}, other)
    with pytest.raises(CheckpointError, match=r"do not fit architecture 'lenet5': (Missing|Unexpected) key"):
        load_robustbench_checkpoint(other, "lenet5", "digits")
    clash = tmp_path / "clash.pt"
    torch.save({"module.a": torch.zeros(1), "model.a": torch.zeros(1)}, clash)
    with pytest.raises(CheckpointError, match=r"both become 'a'"):
        read_robustbench_state(clash)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match=r"holds no state dict of tensors"):
        read_robustbench_state(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_robustbench_state(tmp_path / "missing.pt")


def _run_code(path: str) -> None:
    """What a malicious pickle would call on load: here it only leaves a file behind."""
    Path(path).write_text("code ran")


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_run_code, (self.path,))


def test_a_pickle_with_code_is_refused(tmp_path: Path) -> None:
    model = _digits_model()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": model.net.state_dict(), "payload": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.pt: not a weights-only checkpoint"):
        load_robustbench_checkpoint(path, "lenet5", "digits")
    assert not marker.exists(), "loading must never run the pickle's code"
