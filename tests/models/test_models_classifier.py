"""SmallCNN, the classifier of seed mammography: shapes, options, and that attacks take it."""

from __future__ import annotations

import json

import pytest
import torch

from segshield.attacks import ATTACKS, get_attack, get_loss
from segshield.models.classifier import SmallCNN

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


@pytest.mark.parametrize(("size", "in_channels", "classes"), [(4, 1, 2), (32, 1, 2), (37, 3, 5)])
def test_logits_shape(size: int, in_channels: int, classes: int) -> None:
    torch.manual_seed(0)
    model = SmallCNN(in_channels=in_channels, num_classes=classes, width=4).eval()
    out = model(torch.rand(3, in_channels, size, size))
    assert out.shape == (3, classes) and out.dtype == torch.float32


def test_defaults_and_description() -> None:
    model = SmallCNN()
    assert model.to_dict() == {
        "architecture": "small_cnn",
        "in_channels": 1,
        "num_classes": 2,
        "width": 16,
        "hidden": 50,
    }
    json.dumps(model.to_dict())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]  # as in the seed
    assert [c.out_channels for c in convs] == [16, 32]
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 2)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_arguments(bad: object) -> None:
    for name in ("in_channels", "num_classes", "width", "hidden"):
        with pytest.raises(ValueError, match=name):
            SmallCNN(**{name: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "pgdl2", "segpgd", "cospgd", "dag"])
def test_untargeted_attacks_raise_the_classification_loss(name: str) -> None:
    torch.manual_seed(0)
    model = SmallCNN(width=8).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(6, 1, 32, 32, generator=gen)
    with torch.no_grad():
        labels = model(images).argmax(dim=1)  # correctly classified by construction
    eps = 1.0 if ATTACKS[name].norm == "L2" else 8 / 255
    params = {"generator": gen} if "generator" in ATTACKS[name].param_names() else {}
    adv = get_attack(name, model, "bce", eps, **params)(images, labels)
    ce = get_loss("bce")
    with torch.no_grad():
        assert ce(model(adv), labels).sum() > ce(model(images), labels).sum()
    assert adv.shape == images.shape and adv.min() >= 0.0 and adv.max() <= 1.0
