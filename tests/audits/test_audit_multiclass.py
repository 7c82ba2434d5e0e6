"""Multi-class (softmax) models through the whole audit, on a synthetic 3-class label-map
dataset (unit-test data) and a seeded U-Net with three output channels; real ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segshield.cli.main import app
from segshield.data import dataset_from_folder
from segshield.errors import DataError


def _label_dataset(root: Path, n: int = 3, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        labels = np.zeros((size, size), dtype=np.uint8)
        labels[4:14, 4:14] = 1
        labels[18:28, 16:30] = 2
        image = (labels * 90 + rng.integers(0, 40, labels.shape)).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"s{i}.png")
        Image.fromarray(labels).save(root / "masks" / f"s{i}.png")
    return root


def test_label_maps_load_and_bad_labels_are_named(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "d")
    ds = dataset_from_folder(root, size=(32, 32), num_classes=3)
    assert sorted(np.unique(ds.masks).tolist()) == [0, 1, 2]
    with pytest.raises(DataError, match=r"s0\.png is not binary"):
        dataset_from_folder(root, size=(32, 32))  # a binary task refuses label maps
    with pytest.raises(DataError, match=r"holds labels \[0, 1, 2\]; a 2-class|not binary"):
        dataset_from_folder(root, size=(32, 32), num_classes=2)


def test_multiclass_audit_end_to_end(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "d")
    out = tmp_path / "o"
    res = CliRunner().invoke(
        app,
        [
            "audit",
            "--out",
            str(out),
            "--data",
            str(root),
            "--size",
            "32",
            "--num-classes",
            "3",
            "--model",
            "segshield.models.unet:unet",
            "--model-kwargs",
            '{"out_channels": 3, "base_width": 4, "depth": 2}',
            "--attacks",
            "fgsm,pgd,segpgd",
            "--losses",
            "bce,dice",
            "--epsilons",
            "8/255",
            "--steps",
            "2",
            "--engines",
            "pytorch,ort-fp32,ort-fp16",
            "--no-bench",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    clean = report["clean"]["pytorch"]["metrics"]
    assert clean["num_classes"] == 3 and [c["index"] for c in clean["per_class"]] == [0, 1, 2]
    assert report["task"] == "multiclass"
    assert 0.0 <= clean["dice"] <= 1.0
    assert len(report["cells"]) == 6
    for cell in report["cells"]:
        assert cell["status"] == "ok", cell["error"]
        assert cell["perturbation"]["linf_max"] <= 8 / 255 + 1e-6
        ort = cell["engines"]["ort-fp32"]
        assert ort["disagreement"] < 1e-3 and ort["metrics"]["per_class"][2]["dice"] is not None
        # multi-class audits get bootstrap intervals of the foreground-mean Dice too
        src = cell["engines"]["pytorch"]
        ci = src["ci"]["dice"]
        assert ci["low"] <= src["metrics"]["dice"] + 1e-9 <= ci["high"] + 1e-9
        assert src["ci"]["attack_success"]["n_boot"] == 1000
        assert (out / cell["panels"][0]["file"]).is_file()
    assert "Mean IoU" in (out / "report.md").read_text()


def test_model_with_wrong_channel_count_is_a_clear_error(tmp_path: Path) -> None:
    root = _label_dataset(tmp_path / "d")
    res = CliRunner().invoke(
        app,
        [
            "audit",
            "--out",
            str(tmp_path / "o"),
            "--data",
            str(root),
            "--size",
            "32",
            "--num-classes",
            "3",
            "--model",
            "segshield.models.unet:unet",
            "--model-kwargs",
            '{"base_width": 4, "depth": 2}',
            "--engines",
            "pytorch",
        ],
    )
    assert res.exit_code == 2
    assert "returns 1 logit channels but the audit expects 3" in res.output
