"""The unified accumulator on multi-class (softmax) and multi-label (sigmoid) segmentation,
built through ``MultiClassAccumulator``: golden cases counted by hand, background handling,
empty classes, batch-size independence, errors and JSON output. (Moved from the tests of the
deleted ``metrics/multiclass.py``; the count functions are tested in test_metrics_confusion.py,
``label_disagreement``'s errors in test_metrics_attack.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segshield.errors import ModelOutputError
from segshield.metrics import (
    MULTICLASS_PER_IMAGE_KEYS,
    MultiClassAccumulator,
    MultiClassMetrics,
    SegmentationAccumulator,
    SegmentationMetrics,
    disagreement,
    label_disagreement,
)

pytestmark = pytest.mark.filterwarnings("error")

from metrics_golden import GOLD3, PRED3, TARGET3  # noqa: E402

# Softmax logits: 2 on the predicted class, 0 elsewhere; the pixel CE is LSE - 2 when right and
# LSE - 0 when wrong, with LSE = log(e^2 + (C - 1)).
LSE3 = math.log(math.exp(2.0) + 2.0)

# BCE of a pixel with logit +-2: right side costs log(1+e^-2), wrong side log(1+e^2).
RIGHT = math.log1p(math.exp(-2.0))
WRONG = math.log1p(math.exp(2.0))


def _onehot_logits(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,H,W) labels -> (N,C,H,W) float32 logits with 2.0 on the label, 0.0 elsewhere."""
    onehot = np.eye(num_classes, dtype=np.float32)[labels]  # (N,H,W,C)
    return np.moveaxis(onehot, -1, 1) * 2.0


def _pm2(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 2.0, -2.0).astype(np.float32)


def _pc(m: SegmentationMetrics, field: str) -> tuple:
    """One field of every class, in class order (what the old per-class tuples held)."""
    return tuple(getattr(c, field) for c in m.per_class)


# --- softmax accumulator ----------------------------------------------------------------------


def test_softmax_golden() -> None:
    acc = MultiClassAccumulator(3)
    acc.update(_onehot_logits(PRED3[None], 3), TARGET3[None])
    m = acc.result()
    assert isinstance(m, MultiClassMetrics)  # one result type: the old name is an alias
    assert (m.activation, m.num_classes, m.background, m.foreground) == ("softmax", 3, 0, (1, 2))
    assert {k: _pc(m, k) for k in ("tp", "fp", "fn", "tn")} == GOLD3
    # the top-level counts are now the totals over the foreground classes 1 and 2
    assert (m.tp, m.fp, m.fn, m.tn) == (3 + 3, 2 + 0, 1 + 1, 10 + 12)
    # Dice 2tp/(2tp+fp+fn): 12/16, 6/9, 6/7; IoU tp/(tp+fp+fn): 6/10, 3/6, 3/4
    assert _pc(m, "dice") == (12 / 16, 6 / 9, 6 / 7)
    assert _pc(m, "iou") == (6 / 10, 3 / 6, 3 / 4)
    assert _pc(m, "precision") == (6 / 8, 3 / 5, 1.0)
    assert _pc(m, "recall") == (6 / 8, 3 / 4, 3 / 4)
    # background (class 0) excluded from the means
    assert m.mean_dice == pytest.approx((6 / 9 + 6 / 7) / 2, rel=1e-15)
    assert m.mean_iou == pytest.approx((3 / 6 + 3 / 4) / 2, rel=1e-15)
    assert m.accuracy == 12 / 16
    assert m.loss == pytest.approx((12 * (LSE3 - 2.0) + 4 * LSE3) / 16, rel=1e-12)
    assert m.threshold is None
    assert _pc(m, "dice_per_image") == ((12 / 16,), (6 / 9,), (6 / 7,))
    assert set(m.per_image) == set(MULTICLASS_PER_IMAGE_KEYS)
    assert m.per_image["dice"] == [pytest.approx((6 / 9 + 6 / 7) / 2, rel=1e-15)]
    assert m.per_image["loss"] == [pytest.approx(m.loss, rel=1e-12)]
    assert m.dice_per_image_mean == pytest.approx(m.mean_dice, rel=1e-15)


def test_target_with_channel_axis_and_background_none() -> None:
    acc = MultiClassAccumulator(3, background=None)
    acc.update(_onehot_logits(PRED3[None], 3), TARGET3[None, None].astype(np.uint8))
    m = acc.result()
    assert m.background is None and m.foreground == (0, 1, 2)
    assert m.mean_dice == pytest.approx((12 / 16 + 6 / 9 + 6 / 7) / 3, rel=1e-15)
    other = MultiClassAccumulator(3, background=2)
    other.update(_onehot_logits(PRED3[None], 3), TARGET3[None])
    assert other.result().mean_dice == pytest.approx((12 / 16 + 6 / 9) / 2, rel=1e-15)


def test_background_excluded_changes_mean() -> None:
    # Perfect background, terrible foreground: including class 0 would inflate the mean.
    target = np.zeros((1, 4, 4), int)
    target[0, 0, 0] = 1
    pred = np.zeros((1, 4, 4), int)
    pred[0, 3, 3] = 1
    acc = MultiClassAccumulator(2)
    acc.update(_onehot_logits(pred, 2), target)
    m = acc.result()
    assert m.per_class[1].dice == 0.0
    assert m.mean_dice == 0.0
    assert m.per_class[0].dice == pytest.approx(28 / 30)


def test_absent_class_empty_value() -> None:
    # 4 classes, class 3 neither predicted nor labelled anywhere: denominator 0.
    logits = _onehot_logits(PRED3[None], 4)
    acc = MultiClassAccumulator(4)
    acc.update(logits, TARGET3[None])
    m = acc.result()
    c3 = m.per_class[3]
    assert c3.dice == c3.iou == c3.precision == c3.recall == 1.0
    assert (c3.tp, c3.fp, c3.fn, c3.tn) == (0, 0, 0, 16)
    assert m.mean_dice == pytest.approx((6 / 9 + 6 / 7 + 1.0) / 3, rel=1e-15)

    nan_acc = MultiClassAccumulator(4, empty_value=float("nan"))
    nan_acc.update(logits, TARGET3[None])
    n = nan_acc.result()
    assert math.isnan(n.per_class[3].dice) and math.isnan(n.per_class[3].iou)
    # NaN classes are skipped by the means
    assert n.mean_dice == pytest.approx((6 / 9 + 6 / 7) / 2, rel=1e-15)
    assert n.mean_iou == pytest.approx((3 / 6 + 3 / 4) / 2, rel=1e-15)
    d = n.to_dict()
    json.dumps(d, allow_nan=False)
    # per_class is now a list of dicts in class order (was a dict keyed by str index)
    assert d["per_class"][3]["index"] == 3
    assert d["per_class"][3]["dice"] is None
    assert d["per_class"][3]["dice_per_image"] == [None]
    assert d["empty_value"] is None


def test_all_classes_undefined_gives_nan_without_warning() -> None:
    # Only background everywhere, predicted perfectly; NaN empty value: no foreground defined.
    target = np.zeros((2, 3, 3), int)
    acc = MultiClassAccumulator(3, empty_value=float("nan"))
    acc.update(_onehot_logits(target, 3), target)
    m = acc.result()
    assert m.per_class[0].dice == 1.0
    assert math.isnan(m.mean_dice) and math.isnan(m.dice_per_image_mean)
    d = m.to_dict()
    json.dumps(d, allow_nan=False)
    # the foreground-mean Dice is serialised as "dice" (mean_dice is a property, not a field)
    assert d["dice"] is None and d["per_image"]["dice"] == [None, None]


def _random_softmax(seed: int = 0, n: int = 10, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(n, c, 8, 6)).astype(np.float32)
    target = rng.integers(0, c, size=(n, 8, 6))
    target[n // 2] = 0  # an image with background only
    return logits, target


def _random_sigmoid(seed: int = 0, n: int = 10, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(n, c, 8, 6)).astype(np.float32)
    target = (rng.random((n, c, 8, 6)) < 0.3).astype(np.uint8)
    target[n // 2, 1] = 0  # channel 1 empty in one image
    return logits, target


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_batch_size_independence(mode: str) -> None:
    logits, target = _random_softmax() if mode == "softmax" else _random_sigmoid()
    c = logits.shape[1]
    results = []
    for bs in (1, 2, 5):
        acc = MultiClassAccumulator(c, mode=mode)  # type: ignore[arg-type]
        for start in range(0, len(logits), bs):
            acc.update(logits[start : start + bs], target[start : start + bs])
        results.append(acc.result().to_dict())
    assert results[0] == results[1] == results[2]
    assert results[0]["n_images"] == 10


def test_softmax_aggregates_match_direct_computation() -> None:
    logits, target = _random_softmax(seed=1)
    acc = MultiClassAccumulator(4)
    acc.update(logits, target)
    m = acc.result()
    pred = logits.argmax(axis=1)
    assert m.accuracy == np.mean(pred == target)
    for k in range(4):
        tp = np.sum((pred == k) & (target == k))
        fp = np.sum((pred == k) & (target != k))
        fn = np.sum((pred != k) & (target == k))
        assert m.per_class[k].dice == 2 * tp / (2 * tp + fp + fn)
    x = logits.astype(np.float64)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    ce = -np.log(np.take_along_axis(p, target[:, None], axis=1))
    assert m.loss == pytest.approx(ce.mean(), rel=1e-9)
    assert m.per_image["loss"] == pytest.approx(ce.reshape(10, -1).mean(axis=1), rel=1e-9)


def test_two_class_softmax_matches_binary_accumulator() -> None:
    # Logits [0, x] under softmax give p(class 1) = sigmoid(x) and argmax 1 iff x > 0, the
    # binary rule at threshold 0.5, so every binary score must agree.
    rng = np.random.default_rng(2)
    x = rng.normal(0, 2, size=(6, 1, 7, 5)).astype(np.float32)
    target = (rng.random((6, 1, 7, 5)) < 0.4).astype(np.uint8)
    binary = SegmentationAccumulator()
    binary.update(x, target)
    b = binary.result()
    acc = MultiClassAccumulator(2)
    acc.update(np.concatenate([np.zeros_like(x), x], axis=1), target)
    m = acc.result()
    c1 = m.per_class[1]
    assert (c1.tp, c1.fp, c1.fn, c1.tn) == (b.tp, b.fp, b.fn, b.tn)
    assert m.mean_dice == c1.dice == b.dice
    assert c1.iou == b.iou
    assert m.accuracy == b.accuracy
    assert m.loss == pytest.approx(b.loss, rel=1e-12)
    assert c1.dice_per_image == tuple(b.per_image["dice"])


# --- sigmoid accumulator ----------------------------------------------------------------------

# Golden 3-channel (e.g. stomach, large bowel, small bowel) 2x3 image.
SIG_TARGET = np.array(
    [
        [[1, 1, 0], [0, 0, 0]],  # ch 0
        [[0, 0, 0], [0, 0, 0]],  # ch 1: organ absent
        [[0, 0, 1], [1, 1, 1]],  # ch 2
    ],
    dtype=np.uint8,
)
SIG_PRED = np.array(
    [
        [[1, 0, 0], [0, 0, 0]],  # ch 0: tp 1 (r0c0), fp 0, fn 1 (r0c1), tn 4
        [[0, 0, 0], [0, 0, 0]],  # ch 1: tp 0, fp 0, fn 0, tn 6 -> empty
        [[0, 1, 1], [1, 1, 0]],  # ch 2: tp 3 (r0c2, r1c0, r1c1), fp 1 (r0c1), fn 1 (r1c2), tn 1
    ],
    dtype=bool,
)
# wrong channel-pixels: 1 + 0 + 2 = 3 of 18


def test_sigmoid_golden() -> None:
    acc = MultiClassAccumulator(
        3, mode="sigmoid", class_names=["stomach", "large_bowel", "small_bowel"]
    )
    acc.update(_pm2(SIG_PRED[None]), SIG_TARGET[None])
    m = acc.result()
    assert (m.activation, m.background, m.foreground, m.threshold) == (
        "sigmoid",
        None,
        (0, 1, 2),
        0.5,
    )
    assert _pc(m, "tp") == (1, 0, 3) and _pc(m, "fp") == (0, 0, 1)
    assert _pc(m, "fn") == (1, 0, 1) and _pc(m, "tn") == (4, 6, 1)
    # Dice: 2/3, empty -> 1.0, 6/8
    assert _pc(m, "dice") == (2 / 3, 1.0, 6 / 8)
    assert _pc(m, "iou") == (1 / 2, 1.0, 3 / 5)
    assert _pc(m, "precision") == (1.0, 1.0, 3 / 4)
    assert _pc(m, "recall") == (1 / 2, 1.0, 3 / 4)
    assert m.mean_dice == pytest.approx((2 / 3 + 1.0 + 6 / 8) / 3, rel=1e-15)
    assert m.mean_iou == pytest.approx((1 / 2 + 1.0 + 3 / 5) / 3, rel=1e-15)
    # mean over channels of per-channel accuracy: (5/6 + 6/6 + 4/6) / 3 = 15/18
    assert m.accuracy == pytest.approx(15 / 18, rel=1e-15)
    assert m.loss == pytest.approx((15 * RIGHT + 3 * WRONG) / 18, rel=1e-12)
    assert m.class_name(2) == "small_bowel"
    d = m.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["class_names"] == ["stomach", "large_bowel", "small_bowel"]
    assert d["per_class"][1]["name"] == "large_bowel"
    assert d["per_class"][2]["tp"] == 3


def test_sigmoid_threshold_and_single_channel_matches_binary() -> None:
    # logit 2 is sigmoid 0.88: below a 0.9 threshold, so nothing is predicted.
    acc = MultiClassAccumulator(3, mode="sigmoid", threshold=0.9)
    acc.update(_pm2(SIG_PRED[None]), SIG_TARGET[None])
    m = acc.result()
    assert _pc(m, "tp") == (0, 0, 0) and _pc(m, "fn") == (2, 0, 4) and m.threshold == 0.9

    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, size=(4, 1, 5, 5)).astype(np.float32)
    target = (rng.random((4, 1, 5, 5)) < 0.4).astype(np.uint8)
    binary = SegmentationAccumulator()
    binary.update(x, target, threshold=0.3)
    b = binary.result()
    one = MultiClassAccumulator(1, mode="sigmoid", threshold=0.3)
    one.update(x, target)
    o = one.result()
    assert (o.per_class[0].dice, o.per_class[0].iou, o.accuracy) == (b.dice, b.iou, b.accuracy)
    assert o.loss == pytest.approx(b.loss, rel=1e-12)
    assert list(o.per_class[0].dice_per_image) == b.per_image["dice"]


# --- predictions and disagreement -------------------------------------------------------------


def test_softmax_predictions_and_label_disagreement() -> None:
    logits, target = _random_softmax(seed=4, n=5)
    acc = MultiClassAccumulator(4, keep_predictions=True)
    acc.update(logits[:2], target[:2])
    acc.update(logits[2:], target[2:])
    pred = acc.predictions()
    # Changed on purpose: softmax predictions are (N, 1, H, W) label maps now (were (N, H, W)).
    assert pred.shape == (5, 1, 8, 6) and pred.dtype == np.uint8
    np.testing.assert_array_equal(pred[:, 0], logits.argmax(axis=1))
    share = label_disagreement(pred, target[:, None])
    np.testing.assert_allclose(share, 1.0 - (pred[:, 0] == target).reshape(5, -1).mean(axis=1))
    # the (N, H, W) label maps give the same shares
    np.testing.assert_array_equal(label_disagreement(pred[:, 0], target), share)
    assert label_disagreement(pred, pred).tolist() == [0.0] * 5
    # the binary disagreement refuses label maps with more than two classes
    with pytest.raises(ValueError, match="must be binary"):
        disagreement(pred, target[:, None])


def test_sigmoid_predictions_and_label_disagreement() -> None:
    logits, target = _random_sigmoid(seed=5, n=4)
    acc = MultiClassAccumulator(3, mode="sigmoid", keep_predictions=True)
    acc.update(logits, target)
    pred = acc.predictions()
    assert pred.shape == (4, 3, 8, 6) and pred.dtype == np.bool_
    other = pred.copy()
    other[0, 0, 0, 0] = ~other[0, 0, 0, 0]
    other[0, 1, 0, 0] = ~other[0, 1, 0, 0]  # same pixel, second channel: still one pixel
    other[1, 2, 3, 3] = ~other[1, 2, 3, 3]
    assert label_disagreement(pred, other).tolist() == [1 / 48, 1 / 48, 0.0, 0.0]
    # the binary disagreement counts channel-pixels instead
    assert disagreement(pred, other).tolist() == [2 / 144, 1 / 144, 0.0, 0.0]
    # a single-channel mask gives the same as the binary disagreement
    np.testing.assert_array_equal(
        label_disagreement(pred[:, :1], other[:, :1]), disagreement(pred[:, :1], other[:, :1])
    )


def test_predictions_edge_cases() -> None:
    # Changed on purpose: softmax predictions are (N, 1, H, W) now, so none is (0, 1, 0, 0)
    # (was (0, 0, 0)); still in the label maps' dtype.
    none = MultiClassAccumulator(3, keep_predictions=True).predictions()
    assert none.shape == (0, 1, 0, 0) and none.dtype == np.uint8
    empty = MultiClassAccumulator(3, mode="sigmoid", keep_predictions=True).predictions()
    assert empty.shape == (0, 3, 0, 0) and empty.dtype == np.bool_
    with pytest.raises(RuntimeError, match="keep_predictions=True"):
        MultiClassAccumulator(3).predictions()
    acc = MultiClassAccumulator(3, keep_predictions=True)
    acc.update(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 4, 4), int))
    acc.update(np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 2, 2), int))
    with pytest.raises(ValueError, match="different sizes"):
        acc.predictions()
    assert len(acc) == 2
    acc.reset()
    assert len(acc) == 0


# --- errors -----------------------------------------------------------------------------------


def test_update_shape_errors_name_shapes() -> None:
    acc = MultiClassAccumulator(3)
    # the expected layout reads (N,3,...) now (was (N,3,H,W)): any number of spatial axes
    with pytest.raises(ValueError, match=r"\(N,3,\.\.\.\).*logits \(1, 2, 4, 4\).*\(1, 4, 4\)"):
        acc.update(np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 4, 4), int))
    with pytest.raises(ValueError, match=r"logits \(1, 3, 4, 4\), got target \(1, 4, 3\)"):
        acc.update(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 4, 3), int))
    with pytest.raises(ValueError, match=r"got target \(1, 3, 4, 4\)"):
        acc.update(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), int))
    with pytest.raises(ValueError, match="dtype int64"):
        acc.update(np.zeros((1, 3, 4, 4), np.int64), np.zeros((1, 4, 4), int))
    sig = MultiClassAccumulator(3, mode="sigmoid")
    with pytest.raises(ValueError, match=r"logits \(1, 3, 4, 4\) vs target \(1, 4, 4\)"):
        sig.update(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 4, 4), int))
    with pytest.raises(ValueError, match="must be binary"):
        sig.update(np.zeros((1, 3, 4, 4), np.float32), np.full((1, 3, 4, 4), 2))
    assert len(acc) == 0 and len(sig) == 0  # failed updates add nothing


def test_update_label_out_of_range_names_max_label() -> None:
    acc = MultiClassAccumulator(3)
    target = TARGET3[None].copy()
    target[0, 1, 1] = 5
    with pytest.raises(
        ValueError, match=r"target of shape \(1, 4, 4\).*\[0, 3\).*max label found 5"
    ):
        acc.update(_onehot_logits(PRED3[None], 3), target)
    assert len(acc) == 0


@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_raise_model_output_error(mode: str, bad: float) -> None:
    acc = MultiClassAccumulator(3, mode=mode)  # type: ignore[arg-type]
    logits = np.zeros((2, 3, 4, 4), np.float32)
    logits[1, 2, 0, 0] = bad
    target = np.zeros((2, 4, 4), int) if mode == "softmax" else np.zeros((2, 3, 4, 4), int)
    with pytest.raises(ModelOutputError, match=r"\(2, 3, 4, 4\) has 1 non-finite values"):
        acc.update(logits, target)
    assert len(acc) == 0


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        MultiClassAccumulator(3, mode="argmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        MultiClassAccumulator(1)
    with pytest.raises(ValueError, match="must be an int"):
        MultiClassAccumulator(3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="background 3 out of range for 3 classes"):
        MultiClassAccumulator(3, background=3)
    with pytest.raises(ValueError, match="only class"):
        MultiClassAccumulator(1, mode="sigmoid", background=0)
    with pytest.raises(ValueError, match="background must be"):
        MultiClassAccumulator(3, background="bg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        MultiClassAccumulator(3, mode="sigmoid", threshold=1.0)
    with pytest.raises(ValueError, match="class_names must be 3 strings"):
        MultiClassAccumulator(3, class_names=["a", "b"])
    with pytest.raises(RuntimeError, match="no images accumulated"):
        MultiClassAccumulator(3).result()
    # an explicit background in sigmoid mode excludes that channel from the means
    sig = MultiClassAccumulator(3, mode="sigmoid", background=1)
    assert sig.foreground == (0, 2)


def test_to_dict_is_strict_json() -> None:
    logits, target = _random_softmax(seed=6, n=3)
    acc = MultiClassAccumulator(4, class_names=["bg", "a", "b", "c"])
    acc.update(logits, target)
    d = acc.result().to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back == d
    # per_class is now a list of dicts in class order (was a dict keyed by str index)
    assert [c["index"] for c in d["per_class"]] == [0, 1, 2, 3]
    assert d["per_class"][0]["foreground"] is False and d["per_class"][1]["foreground"]
    assert d["per_class"][1]["name"] == "a"
    assert len(d["per_class"][2]["dice_per_image"]) == 3
    assert set(d["per_image"]) == set(MULTICLASS_PER_IMAGE_KEYS)
    assert d["activation"] == "softmax" and d["threshold"] is None and d["background"] == 0
    assert d["foreground"] == [1, 2, 3]
    # per-class values live under per_class only; top-level dice/iou/tp are now the
    # foreground aggregates of the one result type (changed on purpose), not per-class tuples
    assert "dice_per_image" not in d
    fg = d["per_class"][1:]
    assert d["dice"] == pytest.approx(sum(c["dice"] for c in fg) / 3, rel=1e-15)
    assert d["iou"] == pytest.approx(sum(c["iou"] for c in fg) / 3, rel=1e-15)
    assert d["tp"] == sum(c["tp"] for c in fg)
    for v in (d["dice"], d["mean_iou"], d["accuracy"], d["loss"]):
        assert isinstance(v, float)
    assert isinstance(d["n_images"], int)
