"""Volumes (N, C, D, H, W): every loss and attack works on them as on images, because a
volume is folded into the 4-D working layout (N, C, D*H, W) without changing any value."""

from __future__ import annotations

import pytest
import torch

from segshield.attacks import ATTACKS, get_attack, get_loss
from segshield.attacks.layout import predict_like, prepare

LOSSES = ("bce", "dice", "focal", "dice_focal", "masked_ce", "balanced_masked_ce", "js")


def _volume_case(classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 4, 6, 5, generator=g)
    if classes == 1:
        target = (torch.rand(2, 1, 4, 6, 5, generator=g) > 0.6).float()
    else:
        target = torch.randint(0, classes, (2, 4, 6, 5), generator=g)
    return logits, target


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("loss", LOSSES)
def test_a_volume_loss_is_the_loss_of_its_folded_image(loss: str, classes: int) -> None:
    logits, target = _volume_case(classes)
    fn = get_loss(loss)
    folded_target = target.flatten(2, 3) if classes == 1 else target.flatten(1, 2)
    torch.testing.assert_close(fn(logits, target), fn(logits.flatten(2, 3), folded_target))


def test_predictions_come_back_in_the_volume_shape() -> None:
    logits, target = _volume_case(3)
    assert predict_like(logits, target).shape == target.shape
    logits, target = _volume_case(1)
    assert predict_like(logits, target).shape == target.shape


def test_a_target_that_does_not_fit_names_both_volume_shapes() -> None:
    logits, _ = _volume_case(1)
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 6, 5\).*\(2, 1, 4, 6, 4\)"):
        prepare(logits, torch.zeros(2, 1, 4, 6, 4))


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "apgd", "segpgd", "cospgd", "dag"])
def test_every_linf_attack_runs_on_volumes_within_its_budget(name: str, conv_net) -> None:
    assert name in ATTACKS
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 1, 4, 8, 8, generator=g)
    masks = (torch.rand(2, 1, 4, 8, 8, generator=g) > 0.5).float()
    eps = 8 / 255
    kwargs = {} if name == "fgsm" else {"steps": 3}
    attack = get_attack(name, conv_net(3), "bce", eps, **kwargs)
    adv = attack(images, masks)
    assert adv.shape == images.shape
    assert float((adv - images).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert not torch.equal(adv, images)
