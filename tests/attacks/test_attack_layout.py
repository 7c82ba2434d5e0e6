"""Layout helpers: predictions, correctness masks, target scores, cosine weights, IoU."""

from __future__ import annotations

import math

import pytest
import torch

from segshield.attacks.layout import (
    correct_mask,
    cosine_to_target,
    iou_to_target,
    pixel_accuracy,
    predict_like,
    prepare,
    target_scores,
)

# Binary: 2 images, 1 x 2 pixels.
BIN_Z = torch.tensor([[[[2.0, -1.0]]], [[[-3.0, -0.5]]]])  # (2, 1, 1, 2)
BIN_T = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
# Multi-class: 1 image, 3 classes, 1 x 3 pixels; predictions [0, 1, 2], target [0, 2, 2].
MC_Z = torch.tensor([[[[3.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]], [[0.0, 1.0, 4.0]]]])
MC_T = torch.tensor([[[0, 2, 2]]])


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_prepare_layouts() -> None:
    assert prepare(BIN_Z, BIN_T).sigmoid
    assert not prepare(MC_Z, MC_T).sigmoid
    ml = prepare(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.long))
    assert ml.sigmoid and ml.target.dtype == torch.float32
    cls = prepare(torch.zeros(2, 3), torch.tensor([0, 2]))
    assert not cls.sigmoid and cls.logits.shape == (2, 3, 1, 1) and cls.target.shape == (2, 1, 1)
    assert cls.target_shape == (2,)
    with pytest.raises(ValueError, match=r"4-D.*\(2, 3, 4\)"):
        prepare(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_predict_and_correct() -> None:
    assert torch.equal(predict_like(BIN_Z, BIN_T), torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]]))
    assert torch.equal(
        correct_mask(BIN_Z, BIN_T), torch.tensor([[[[True, False]]], [[[True, True]]]])
    )
    assert torch.equal(predict_like(MC_Z, MC_T), torch.tensor([[[0, 1, 2]]]))
    assert torch.equal(correct_mask(MC_Z, MC_T), torch.tensor([[[True, False, True]]]))
    z = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert torch.equal(predict_like(z, torch.tensor([1, 1])), torch.tensor([1, 0]))
    assert torch.equal(correct_mask(z, torch.tensor([1, 1])), torch.tensor([True, False]))
    ml_t = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])  # multi-label classifier
    assert torch.equal(
        correct_mask(z, ml_t), torch.tensor([[True, False, True], [True, False, True]])
    )


def test_target_scores() -> None:
    # signed logit for sigmoid layouts, the target class's logit for softmax ones
    assert torch.equal(target_scores(BIN_Z, BIN_T), torch.tensor([[[[2.0, -1.0]]], [[[3.0, 0.5]]]]))
    assert torch.equal(target_scores(MC_Z, MC_T), torch.tensor([[[3.0, 1.0, 4.0]]]))


def test_cosine_to_target_golden() -> None:
    got = cosine_to_target(BIN_Z.double(), BIN_T.double())
    for idx, (z, t) in {(0, 0): (2.0, 1), (0, 1): (-1.0, 1), (1, 0): (-3.0, 0)}.items():
        p = sigmoid(z)
        p_t = p if t == 1 else 1 - p
        expected = p_t / math.sqrt(p**2 + (1 - p) ** 2)  # cos([1-p, p], one-hot)
        assert got[idx[0], 0, 0, idx[1]].item() == pytest.approx(expected, rel=1e-12)
    mc = cosine_to_target(MC_Z.double(), MC_T)
    probs = torch.softmax(MC_Z.double(), dim=1)[0, :, 0, 1]  # pixel 1, target class 2
    expected = torch.nn.functional.cosine_similarity(
        probs, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), dim=0
    )
    assert mc[0, 0, 1].item() == pytest.approx(expected.item(), rel=1e-12)
    assert mc.shape == MC_T.shape and bool(((mc > 0) & (mc <= 1)).all())


def test_iou_and_pixel_accuracy() -> None:
    # image 0: predicted {0}, target {0, 1} -> 1/2; image 1: both empty -> 1 by convention
    assert iou_to_target(BIN_Z, BIN_T).tolist() == [0.5, 1.0]
    assert pixel_accuracy(BIN_Z, BIN_T).tolist() == [0.5, 1.0]
    # multi-class, background (class 0) excluded: class 1 IoU 0/1, class 2 IoU 1/2 -> 0.25
    assert iou_to_target(MC_Z, MC_T).tolist() == [0.25]
    assert pixel_accuracy(MC_Z, MC_T).tolist() == pytest.approx([2 / 3])
    # multi-label: mean over channels present in prediction or target
    z = torch.tensor([[[[1.0, 1.0]], [[-1.0, -1.0]], [[1.0, -1.0]]]])
    t = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[1.0, -0.0]]]])
    assert iou_to_target(z, t).tolist() == [pytest.approx((0.5 + 1.0) / 2)]
    # classification: hit or miss (class 0 is background)
    zc = torch.tensor([[0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    assert iou_to_target(zc, torch.tensor([1, 1, 0])).tolist() == [1.0, 0.0, 1.0]
