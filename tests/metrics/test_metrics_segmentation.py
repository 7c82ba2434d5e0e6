"""Golden values for every count-based metric, empty-mask conventions, broadcasting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segshield.metrics import (
    dice,
    iou,
    mean_iou,
    pixel_accuracy,
    pixel_error_l2,
    pixel_error_rms,
    precision,
    recall,
)

pytestmark = pytest.mark.filterwarnings("error")

# The golden 4x4 image of test_metrics_confusion.py: tp=3, fp=1, fn=2, tn=10 (16 pixels).
TP, FP, FN, TN = 3, 1, 2, 10


def test_golden_scalar_values() -> None:
    assert dice(TP, FP, FN) == 2 * 3 / (2 * 3 + 1 + 2)  # 2/3
    assert iou(TP, FP, FN) == 3 / (3 + 1 + 2)  # 1/2
    # foreground IoU 3/6, background IoU tn/(tn+fp+fn) = 10/13
    assert mean_iou(TP, FP, FN, TN) == pytest.approx((1 / 2 + 10 / 13) / 2, rel=1e-15)
    assert mean_iou(TP, FP, FN, TN) == pytest.approx(33 / 52, rel=1e-15)
    assert pixel_accuracy(TP, FP, FN, TN) == (3 + 10) / 16
    assert precision(TP, FP) == 3 / 4
    assert recall(TP, FN) == 3 / 5
    assert pixel_error_l2(FP, FN) == math.sqrt(3)
    assert pixel_error_rms(FP, FN, TN, TP) == math.sqrt(3 / 16)
    assert isinstance(dice(TP, FP, FN), float)


def test_mean_iou_matches_two_class_confusion_matrix() -> None:
    # Keras MeanIoU: cm[i, j] = pixels of true class i predicted as j; IoU_k = cm_kk / (row_k +
    # col_k - cm_kk); mean over the classes whose denominator is non-zero.
    cm = np.array([[TN, FP], [FN, TP]], dtype=float)
    diag = np.diag(cm)
    ious = diag / (cm.sum(0) + cm.sum(1) - diag)
    assert mean_iou(TP, FP, FN, TN) == pytest.approx(ious.mean(), rel=1e-15)


def test_arrays_per_image() -> None:
    tp = np.array([3, 0, 0, 5])
    fp = np.array([1, 0, 16, 0])
    fn = np.array([2, 0, 0, 0])
    tn = np.array([10, 16, 0, 11])
    d = dice(tp, fp, fn)
    assert isinstance(d, np.ndarray)
    assert d.dtype == np.float64
    # image 1 both empty -> empty_value 1.0; image 2 all false positives -> 0; image 3 perfect
    np.testing.assert_array_equal(d, [2 / 3, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(iou(tp, fp, fn), [0.5, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(mean_iou(tp, fp, fn, tn), [33 / 52, 1.0, 0.0, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(pixel_accuracy(tp, fp, fn, tn), [13 / 16, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(precision(tp, fp), [0.75, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(recall(tp, fn), [0.6, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(pixel_error_l2(fp, fn), [math.sqrt(3), 0.0, 4.0, 0.0])
    np.testing.assert_array_equal(
        pixel_error_rms(fp, fn, tn, tp), [math.sqrt(3 / 16), 0.0, 1.0, 0.0]
    )


@pytest.mark.parametrize("fn_name", ["dice", "iou"])
def test_empty_masks_use_empty_value(fn_name: str) -> None:
    f = {"dice": dice, "iou": iou}[fn_name]
    assert f(0, 0, 0) == 1.0
    assert f(0, 0, 0, empty_value=0.0) == 0.0
    assert math.isnan(f(0, 0, 0, empty_value=float("nan")))
    # Only the 0/0 entry is replaced.
    out = f(np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), empty_value=float("nan"))
    assert math.isnan(out[0])
    assert out[1] == (2 / 3 if fn_name == "dice" else 1 / 2)


def test_precision_recall_empty_value() -> None:
    # Nothing predicted: precision undefined; nothing to find: recall undefined.
    assert precision(0, 0) == 1.0
    assert math.isnan(precision(0, 0, empty_value=float("nan")))
    assert precision(0, 3) == 0.0
    assert recall(0, 0) == 1.0
    assert recall(0, 0, empty_value=0.0) == 0.0
    assert recall(0, 4) == 0.0


def test_mean_iou_empty_classes() -> None:
    # Both masks empty (16 px): foreground IoU = empty_value, background IoU = 16/16.
    assert mean_iou(0, 0, 0, 16) == 1.0
    assert mean_iou(0, 0, 0, 16, empty_value=0.0) == 0.5
    assert math.isnan(mean_iou(0, 0, 0, 16, empty_value=float("nan")))
    # Both masks full: background class absent.
    assert mean_iou(16, 0, 0, 0) == 1.0


def test_zero_pixels_give_nan_for_pixel_ratios() -> None:
    assert math.isnan(pixel_accuracy(0, 0, 0, 0))
    assert math.isnan(pixel_error_rms(0, 0, 0, 0))


def test_negative_counts_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        dice(-1, 0, 0)
    with pytest.raises(ValueError, match="numeric"):
        iou("a", 0, 0)  # type: ignore[arg-type]
