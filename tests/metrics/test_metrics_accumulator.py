"""SegmentationAccumulator: golden batch, batch-size independence, errors, JSON output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segshield.errors import ModelOutputError
from segshield.metrics import (
    PER_IMAGE_KEYS,
    SegmentationAccumulator,
    confusion_counts,
    dice,
    disagreement,
)

pytestmark = pytest.mark.filterwarnings("error")

# Golden 4x4 image (see test_metrics_confusion.py): tp=3, fp=1, fn=2, tn=10.
PRED = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=bool)
TARGET = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=np.uint8)

# BCE of a pixel with logit +-2: right side costs log(1+e^-2), wrong side log(1+e^2).
RIGHT = math.log1p(math.exp(-2.0))
WRONG = math.log1p(math.exp(2.0))


def _logits(pred: np.ndarray) -> np.ndarray:
    return np.where(pred, 2.0, -2.0).astype(np.float32)


def test_golden_batch() -> None:
    # image 0: golden (tp 3, fp 1, fn 2, tn 10); image 1: both empty (tn 16)
    pred = np.stack([PRED, np.zeros((4, 4), bool)])[:, None]
    target = np.stack([TARGET, np.zeros((4, 4), np.uint8)])[:, None]
    acc = SegmentationAccumulator()
    acc.update(_logits(pred), target)
    m = acc.result()
    # totals: tp 3, fp 1, fn 2, tn 26 over 32 pixels
    assert (m.tp, m.fp, m.fn, m.tn, m.n_images) == (3, 1, 2, 26, 2)
    assert m.dice == 2 * 3 / (2 * 3 + 1 + 2)
    assert m.iou == 3 / 6
    assert m.mean_iou == pytest.approx((3 / 6 + 26 / 29) / 2, rel=1e-15)
    assert m.accuracy == 29 / 32
    assert m.precision == 3 / 4
    assert m.recall == 3 / 5
    # per image L2: sqrt(3) and 0
    assert m.pixel_error_l2 == pytest.approx(math.sqrt(3) / 2, rel=1e-15)
    assert m.pixel_error_rms == pytest.approx(math.sqrt(3 / 32), rel=1e-15)
    # 3 wrong pixels of 32
    assert m.loss == pytest.approx((29 * RIGHT + 3 * WRONG) / 32, rel=1e-12)
    assert m.per_image["dice"] == [2 / 3, 1.0]  # empty image -> empty_value 1.0
    assert m.dice_per_image_mean == pytest.approx((2 / 3 + 1.0) / 2, rel=1e-15)
    assert m.per_image["iou"] == [0.5, 1.0]
    assert m.per_image["pixel_error_l2"] == [math.sqrt(3), 0.0]
    np.testing.assert_allclose(
        m.per_image["loss"], [(13 * RIGHT + 3 * WRONG) / 16, RIGHT], rtol=1e-12
    )
    assert set(m.per_image) == set(PER_IMAGE_KEYS)
    assert m.threshold == 0.5


def test_empty_value_nan_propagates_and_is_json_none() -> None:
    acc = SegmentationAccumulator(empty_value=float("nan"))
    pred = np.stack([PRED, np.zeros((4, 4), bool)])[:, None]
    target = np.stack([TARGET, np.zeros((4, 4), np.uint8)])[:, None]
    acc.update(_logits(pred), target)
    m = acc.result()
    assert m.per_image["dice"][0] == 2 / 3
    assert math.isnan(m.per_image["dice"][1])
    assert m.dice_per_image_mean == 2 / 3  # undefined images skipped
    d = m.to_dict()
    assert d["per_image"]["dice"] == [2 / 3, None]
    assert d["empty_value"] is None
    json.dumps(d, allow_nan=False)


def test_all_empty_dataset() -> None:
    acc = SegmentationAccumulator()
    z = np.zeros((2, 1, 4, 4))
    acc.update(z - 5.0, z)
    m = acc.result()
    assert (m.dice, m.iou, m.precision, m.recall, m.mean_iou, m.accuracy) == (1, 1, 1, 1, 1, 1)
    assert m.pixel_error_l2 == 0.0


def _random_data(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(n, 1, 12, 12)).astype(np.float32)
    target = (rng.random((n, 1, 12, 12)) > 0.6).astype(np.uint8)
    target[3] = 0  # one empty target to exercise the conventions
    return logits, target


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_batch_size_independence(threshold: float) -> None:
    logits, target = _random_data()
    results = []
    for bs in (1, 3, 10):
        acc = SegmentationAccumulator()
        for start in range(0, len(logits), bs):
            sl = slice(start, start + bs)
            acc.update(logits[sl], target[sl], threshold=threshold)
        results.append(acc.result().to_dict())
    assert results[0] == results[1] == results[2]
    assert results[0]["n_images"] == 10


def test_aggregates_match_direct_computation() -> None:
    logits, target = _random_data(seed=1)
    acc = SegmentationAccumulator()
    acc.update(logits, target)
    m = acc.result()
    pred = 1.0 / (1.0 + np.exp(-logits.astype(np.float64))) > 0.5
    c = confusion_counts(pred, target).total()
    assert m.dice == dice(c.tp, c.fp, c.fn)[0]
    assert m.accuracy == np.mean(pred == target.astype(bool))
    p = np.clip(1.0 / (1.0 + np.exp(-logits.astype(np.float64))), 1e-12, 1 - 1e-12)
    t = target.astype(np.float64)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert m.loss == pytest.approx(bce.mean(), rel=1e-9)


def test_keep_predictions_and_disagreement() -> None:
    logits, target = _random_data(seed=2)
    a = SegmentationAccumulator(keep_predictions=True)
    b = SegmentationAccumulator(keep_predictions=True)
    a.update(logits[:4], target[:4])
    a.update(logits[4:], target[4:])
    noisy = logits.copy()
    noisy[0, 0, 0, :6] = np.where(logits[0, 0, 0, :6] > 0, -1.0, 1.0)  # flip 6 pixels
    b.update(noisy, target)
    pa, pb = a.predictions(), b.predictions()
    assert pa.shape == (10, 1, 12, 12)
    assert pa.dtype == np.bool_
    np.testing.assert_array_equal(pa, logits > 0)
    d = disagreement(pa, pb)
    assert d[0] == 6 / 144
    assert np.all(d[1:] == 0)


def test_predictions_not_kept() -> None:
    acc = SegmentationAccumulator()
    logits, target = _random_data()
    acc.update(logits, target)
    with pytest.raises(RuntimeError, match="keep_predictions"):
        acc.predictions()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_raise_model_output_error(bad: float) -> None:
    logits, target = _random_data()
    logits[2, 0, 1, 1] = bad
    logits[5, 0, 3, 4] = bad
    acc = SegmentationAccumulator()
    with pytest.raises(ModelOutputError, match="2 non-finite values"):
        acc.update(logits, target)
    assert acc.n_images == 0  # nothing half-recorded


def test_input_errors_name_shapes() -> None:
    acc = SegmentationAccumulator()
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 1, 4, 5\)"):
        acc.update(np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        acc.update(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"target of shape \(2, 1, 4, 4\) must be binary"):
        acc.update(np.zeros((2, 1, 4, 4)), np.full((2, 1, 4, 4), 255))
    with pytest.raises(ValueError, match="floating"):
        acc.update(np.zeros((2, 1, 4, 4), dtype=np.int64), np.zeros((2, 1, 4, 4)))
    with pytest.raises(RuntimeError, match="no images"):
        acc.result()
    acc.update(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="threshold changed"):
        acc.update(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)), threshold=0.7)


def test_reset() -> None:
    acc = SegmentationAccumulator()
    logits, target = _random_data()
    acc.update(logits, target)
    acc.reset()
    assert len(acc) == 0
    acc.update(logits[:2], target[:2], threshold=0.8)
    assert acc.result().n_images == 2


def test_to_dict_is_json_serialisable() -> None:
    logits, target = _random_data()
    acc = SegmentationAccumulator()
    acc.update(logits, target)
    d = acc.result().to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["n_images"] == 10
    assert isinstance(back["tp"], int)
    assert len(back["per_image"]["dice"]) == 10
    assert all(type(v) in (float, int) for k, v in d.items() if k != "per_image")
