"""Training any factory's model: the validation split (by volume), early stopping with the
best epoch's weights restored, the degenerate-model refusal, the card's undefined ratios,
multi-class and multi-label models, and the card loading back as a model."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segshield.errors import SegShieldError
from segshield.models import model_from_card
from segshield.training import (
    DegenerateModelError,
    TrainConfig,
    measure,
    train,
    training_loss,
    validation_split,
)
from segshield.training.evaluation import segmentation_task
from segshield.training.fit import FitSettings, fit

FACTORIES = """
import torch
from torch import nn

class Constant(nn.Module):
    '''Logit -10 at every pixel whatever the input: predicts background everywhere.'''
    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # Adam needs a parameter; its grad is 0
    def forward(self, x):
        return x[:, :1] * 0.0 - 10.0 + 0.0 * self.unused

def constant():
    return Constant()

def small(in_channels=1, out_channels=1):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.Tanh(),
                         nn.Conv2d(4, out_channels, 3, padding=1))
"""


@dataclass(frozen=True)
class Data:
    """In-memory training data (the form train() takes besides a SegDataset)."""

    images: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]
    source: str = "memory"
    meta: dict = field(default_factory=dict)


def blobs(n: int = 8, size: int = 16, channels: int = 1, seed: int = 0) -> Data:
    """Bright squares on noise; the mask is the square (learnable by a 3x3 conv)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        for c in range(channels):
            y, x = rng.integers(0, size - 6, 2)
            images[i, 0, y : y + 5, x : x + 5] += 0.6
            masks[i, c, y : y + 5, x : x + 5] = 1
    return Data(
        images,
        masks,
        tuple(f"img{i}" for i in range(n)),
        meta={"volume": [f"v{i // 2}" for i in range(n)]},
    )


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "team_models.py"
    path.write_text(textwrap.dedent(FACTORIES))
    return path


def test_validation_split_keeps_volumes_together() -> None:
    volumes = ["a", "a", "b", "b", "b", "c", "d", "d"]
    tr, va, by = validation_split(8, volumes, 0.25, seed=0)
    assert by == "volume" and sorted([*tr, *va]) == list(range(8))
    held = {volumes[i] for i in va}
    assert len(held) == 1 and not held & {volumes[i] for i in tr}  # 1 of 4 volumes
    assert (tr == validation_split(8, volumes, 0.25, seed=0)[0]).all()  # seeded
    tr, va, by = validation_split(10, None, 0.2, seed=1)
    assert by == "image" and len(va) == 2
    assert validation_split(5, None, 0.0, 0)[2] == "none"
    assert validation_split(3, ["x", "x", "x"], 0.5, 0)[2] == "none"  # one volume: nothing held
    with pytest.raises(SegShieldError, match="3 ids for 4 images"):
        validation_split(4, ["a", "b", "c"], 0.2, 0)


def test_early_stopping_restores_the_best_epochs_weights() -> None:
    data = blobs()
    task = segmentation_task(1, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 3, padding=1))
    ascent = training_loss("bce")
    states: dict[int, dict] = {}

    def on_epoch(summary) -> None:  # snapshot the weights each epoch ends with
        states[summary.epoch] = copy.deepcopy(model.state_dict())

    # Gradient *ascent* on BCE makes every epoch worse than the first: the best is epoch 1.
    settings = FitSettings(epochs=8, batch_size=4, lr=0.05, zoom=0.0, augment_copies=1, patience=2)
    result = fit(
        model, task, lambda z, y: -ascent(z, y), (data.images[:6], data.masks[:6]),
        (data.images[6:], data.masks[6:]), settings, torch.Generator().manual_seed(0),
        on_epoch=on_epoch,
    )  # fmt: skip
    dice = [h.val_dice for h in result.history]
    assert result.monitor == "val_dice" and result.stopped_early
    # no later epoch beats epoch 1 (a tie is no improvement): stopped after `patience` more
    assert len(result.history) == 3 and result.best_epoch == 1 and dice[0] >= max(dice[1:])
    assert [h.best for h in result.history] == [True, False, False]
    assert result.history[2].val_loss > result.history[0].val_loss  # the weights did move
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, states[1][key], rtol=0, atol=0)
    assert any(not torch.equal(states[1][k], states[3][k]) for k in states[1])
    restored = measure(model, data.images[6:], data.masks[6:], task)
    assert restored.dice == pytest.approx(dice[0], abs=1e-12)


def test_a_constant_model_is_degenerate_and_the_card_leaves_precision_undefined(
    factories: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(
        name="const", epochs=1, batch_size=4, model=f"{factories}:constant", augment_copies=1
    )
    data = blobs()
    with pytest.raises(DegenerateModelError, match="background everywhere") as info:
        train(cfg, data, blobs(4, seed=1), tmp_path / "a")
    result = info.value.result
    card = json.loads(result.card.read_text())
    assert result.weights.is_file() and card["training"]["degenerate"] == result.degenerate
    m = card["test_metrics"]
    assert (m["tp"], m["fp"]) == (0, 0) and m["fn"] > 0
    assert m["precision"] is None and m["recall"] == 0.0 and m["dice"] == 0.0
    assert card["architecture"] == {
        "architecture": "factory", "factory": f"{factories}:constant", "factory_kwargs": {}
    }  # fmt: skip
    allowed = train(
        TrainConfig(**{**cfg.__dict__, "allow_degenerate": True}), data, None, tmp_path / "b"
    )
    assert "background everywhere (TP 0, FP 0) on the validation split" in allowed.degenerate
    assert allowed.test_metrics["precision"] is None


def test_multiclass_and_multilabel_factories_train_and_load_back(
    factories: Path, tmp_path: Path
) -> None:
    data = blobs(6, channels=2)
    labels = Data(data.images, data.masks[:, :1] * 2, data.names)  # label maps 0 / 2
    multi = TrainConfig(
        name="mc", epochs=1, model=f"{factories}:small", model_kwargs={"out_channels": 3},
        num_classes=3, loss="dice_focal", pos_weight="auto", augment_copies=1,
        allow_degenerate=True,
    )  # fmt: skip
    res = train(multi, labels, None, tmp_path)
    card = json.loads(res.card.read_text())
    assert card["training"]["task"] == "multiclass" and card["test_metrics"]["num_classes"] == 3
    assert card["training"]["pos_weight"]["auto"] is True
    loaded = model_from_card(res.card)  # the factory card rebuilds the model
    x = torch.from_numpy(data.images[:2])
    assert loaded.module(x).shape == (2, 3, 16, 16)
    ml = TrainConfig(
        name="ml", epochs=1, model=f"{factories}:small", model_kwargs={"out_channels": 2},
        loss="focal", augment_copies=1, allow_degenerate=True, val_fraction=0.0,
    )  # fmt: skip
    res = train(ml, data, None, tmp_path)
    card = json.loads(res.card.read_text())
    assert card["training"]["task"] == "multilabel"
    assert card["data"]["test"]["same_as"].startswith("training data")
    with pytest.raises(SegShieldError, match=r"training needs logits \(1, 3, 16, 16\)"):
        train(TrainConfig(**{**multi.__dict__, "model_kwargs": {}}), labels, None, tmp_path)
