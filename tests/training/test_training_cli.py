"""`segshield train` through the CLI: a factory file's model with per-batch progress, the
degenerate-model exit 1 (0 with --allow-degenerate), and the classifier on the user's
images (patches cut from their masks)."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.cli.main import app

runner = CliRunner()

MODELS = """
import torch
from torch import nn

def small(out_channels=1):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(),
                         nn.Conv2d(4, out_channels, 3, padding=1))

class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
    def forward(self, x):
        return x[:, :1] * 0.0 - 10.0 + 0.0 * self.unused

def constant():
    return Constant()
"""

QUICK = ["--epochs", "1", "--size", "32", "--batch-size", "4"]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`team_net.py` in the current folder, named as a file (the `file.py:fn` form)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "team_net.py").write_text(textwrap.dedent(MODELS))
    return "team_net.py"


def test_train_a_factory_file_with_batch_progress(models: str, tmp_path: Path) -> None:
    args = ["train", "--out", "out", "--name", "net", "--model", f"{models}:small"]
    res = runner.invoke(app, [*args, *QUICK, "--loss", "dice_focal", "--pos-weight", "auto"])
    assert res.exit_code == 0, res.output
    assert re.search(r"^epoch 1/1 batch 1/\d+ dice_focal \d\.\d{4}$", res.output, re.M)
    assert re.search(
        r"^\[1/1\] epoch 1 \(dice_focal [\d.]+, val dice [\d.]+ best\) done", res.output, re.M
    )
    card = json.loads((tmp_path / "out" / "net.json").read_text())
    assert card["architecture"]["factory"] == f"{models}:small"
    training = card["training"]
    assert training["loss"] == "dice_focal" and training["pos_weight"]["auto"] is True
    assert training["pos_weight"]["value"] == pytest.approx(
        training["pos_weight"]["negatives"] / training["pos_weight"]["positives"], abs=1e-3
    )
    assert training["validation"]["split_by"] == "image" and training["validation"]["names"]
    assert card["data"]["test"]["n_images"] == 4  # the bundled test split
    # the card is a model the audit loads (the factory file found beside the card, too)
    res = runner.invoke(
        app,
        ["audit", "--out", "a", "--weights", "out/net.json", "--size", "32", "--limit", "1",
         "--attacks", "fgsm", "--epsilons", "2/255", "--engines", "pytorch", "--no-bench"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output


def test_a_degenerate_model_exits_1_unless_allowed(models: str, tmp_path: Path) -> None:
    args = ["train", "--out", "out", "--name", "const", "--model", f"{models}:constant", *QUICK]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "WARNING: the trained model is degenerate" in res.output
    assert "background everywhere" in res.output and "--allow-degenerate" in res.output
    card = json.loads((tmp_path / "out" / "const.json").read_text())  # written all the same
    assert card["test_metrics"]["precision"] is None and card["training"]["degenerate"]
    res = runner.invoke(app, [*args, "--allow-degenerate"])
    assert res.exit_code == 0, res.output
    assert "Kept because of --allow-degenerate" in res.output


def test_bad_options_are_exit_2(models: str) -> None:
    for extra, needle in [
        (["--model", "team_net.py:nope"], "has no attribute 'nope'"),
        (["--loss", "hinge"], "unknown training loss"),
        (["--pos-weight", "lots"], "--pos-weight"),
        (["--task", "classification", "--model", "team_net.py:small"], "--model is for"),
        (["--model", "team_net.py:small", "--model-kwargs", '{"out_channels": 2}'], "logits"),
    ]:
        res = runner.invoke(app, ["train", "--out", "o", *QUICK, *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert needle in res.output, (extra, res.output)


def test_train_a_classifier_on_patches_of_the_users_images(models: str, tmp_path: Path) -> None:
    args = ["train", "--task", "classification", "--out", "cls", "--name", "cnn"]
    opts = [*QUICK, "--size", "64", "--patch", "16", "--stride", "16", "--allow-degenerate"]
    res = runner.invoke(app, [*args, *opts])
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output
    assert re.search(r"^epoch 1/1 batch 1/\d+ ce \d\.\d{4}$", res.output, re.M)
    card = json.loads((tmp_path / "cls" / "cnn.json").read_text())
    assert card["architecture"]["architecture"] == "small_cnn"
    assert card["data"]["classes"] == ["background", "nucleus"]
    assert "degenerate" in card["training"]
    assert card["data"]["test"]["patch"] == 16 and card["data"]["test"]["stride"] == 16


def test_classifier_degenerate_from_the_confusion_matrix() -> None:
    from segshield.training.classifier import classifier_degenerate

    classes = ("background", "nucleus")
    assert classifier_degenerate({"confusion": [[5, 0], [3, 0]]}, classes) == (
        "it predicts 'background' for every image of the test data"
    )
    assert classifier_degenerate({"confusion": [[5, 1], [3, 2]]}, classes) is None
    assert classifier_degenerate({"confusion": [[5, 0], [0, 0]]}, classes) is None  # one class
