"""The seed's training losses on hand-made tensors (golden values worked out by hand), the
foreground weight, and `--pos-weight auto`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segshield.errors import SegShieldError
from segshield.training import POS_WEIGHT_CAP, auto_pos_weight, training_loss
from segshield.training.losses import parse_pos_weight

LN2, LN3 = math.log(2.0), math.log(3.0)


def _binary() -> tuple[torch.Tensor, torch.Tensor]:
    """One image, 2x2: logits 0 (p = 0.5) and ln 3 (p = 0.75); truth 1, 1, 0, 0."""
    logits = torch.tensor([[[[0.0, LN3], [0.0, LN3]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    return logits, target


def test_dice_golden() -> None:
    logits, target = _binary()
    # P = (0.5, 0.75, 0.5, 0.75), T = (1, 1, 0, 0): |P∩T| = 1.25, |P| = 2.5, |T| = 2
    expected = 1.0 - (2 * 1.25 + 1.0) / (2.5 + 2.0 + 1.0)
    assert float(training_loss("dice")(logits, target)) == pytest.approx(expected, abs=1e-6)


def test_focal_golden() -> None:
    logits, target = _binary()
    # p_t: 0.5, 0.75 (truth 1); 0.5, 0.25 (truth 0); focal = (1 - p_t)^2 * -ln p_t
    terms = [0.25 * LN2, 0.0625 * -math.log(0.75), 0.25 * LN2, 0.5625 * -math.log(0.25)]
    got = float(training_loss("focal")(logits, target))
    assert got == pytest.approx(sum(terms) / 4, abs=1e-6)
    # gamma 0 is plain BCE
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert float(training_loss("focal", gamma=0.0)(logits, target)) == pytest.approx(float(bce))


def test_dice_focal_is_their_sum_and_batch_mean() -> None:
    logits, target = _binary()
    two_l, two_t = torch.cat([logits, -logits]), torch.cat([target, target])
    total = training_loss("dice_focal")(two_l, two_t)
    parts = [training_loss(k)(two_l, two_t) for k in ("dice", "focal")]
    assert float(total) == pytest.approx(float(parts[0] + parts[1]), abs=1e-6)
    per_image = [float(training_loss("dice")(two_l[i : i + 1], two_t[i : i + 1])) for i in (0, 1)]
    assert float(parts[0]) == pytest.approx(sum(per_image) / 2, abs=1e-6)


def test_pos_weight_is_bce_with_logits_pos_weight() -> None:
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    got = float(training_loss("bce", pos_weight=3.0)(logits, target))
    assert got == pytest.approx((3 * LN2 + LN2) / 2, abs=1e-6)  # 2 ln 2
    logits, target = _binary()
    ref = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(4.0))
    assert float(training_loss("bce", pos_weight=4.0)(logits, target)) == pytest.approx(float(ref))
    # Dice is left unweighted; Focal's foreground terms are weighted
    assert float(training_loss("dice", pos_weight=4.0)(logits, target)) == pytest.approx(
        float(training_loss("dice")(logits, target))
    )
    focal_w = float(training_loss("focal", pos_weight=2.0)(logits, target))
    terms = [2 * 0.25 * LN2, 2 * 0.0625 * -math.log(0.75), 0.25 * LN2, 0.5625 * -math.log(0.25)]
    assert focal_w == pytest.approx(sum(terms) / 4, abs=1e-6)


def test_multiclass_bce_is_weighted_cross_entropy() -> None:
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    target = torch.tensor([[[0, 2]]])  # background, class 2
    ce = F.cross_entropy(logits, target, reduction="none")[0, 0]
    got = float(training_loss("bce", pos_weight=5.0, multiclass=True)(logits, target))
    assert got == pytest.approx(float(ce[0] + 5 * ce[1]) / 2, abs=1e-6)


def test_auto_pos_weight() -> None:
    masks = np.zeros((2, 1, 10, 10), dtype=np.uint8)
    masks[0, 0, :2, :3] = 1  # 6 of 200 pixels
    w = auto_pos_weight(masks)
    assert (w.value, w.negatives, w.positives, w.capped) == (round(194 / 6, 4), 194, 6, False)
    sparse = np.zeros((1, 1, 100, 100), dtype=np.uint8)
    sparse[0, 0, 0, 0] = 1
    capped = auto_pos_weight(sparse)
    assert capped.value == POS_WEIGHT_CAP and capped.capped and capped.to_dict()["auto"]
    labels = np.zeros((1, 1, 2, 2), dtype=np.uint8)
    labels[0, 0, 0] = (1, 2)  # multi-class: every class but 0 is foreground
    assert auto_pos_weight(labels, multiclass=True).value == 1.0
    with pytest.raises(SegShieldError, match="no foreground pixel"):
        auto_pos_weight(np.zeros((1, 1, 4, 4), dtype=np.uint8))


def test_parse_pos_weight_and_loss_names() -> None:
    masks = np.ones((1, 1, 2, 2), dtype=np.uint8)
    masks[0, 0, 0, 0] = 0
    assert parse_pos_weight("AUTO", masks, False).value == pytest.approx(1 / 3, abs=1e-4)
    assert parse_pos_weight("2.5", masks, False).value == 2.5
    for bad in ("heavy", "-1", "nan", "0"):
        with pytest.raises(SegShieldError, match="--pos-weight"):
            parse_pos_weight(bad, masks, False)
    with pytest.raises(SegShieldError, match="unknown training loss 'hinge'"):
        training_loss("hinge")
