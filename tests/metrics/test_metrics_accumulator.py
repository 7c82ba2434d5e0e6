"""The unified accumulator: the binary case (``SegmentationAccumulator`` and
``Accumulator(SIGMOID, 1)``) on a golden batch, classification as softmax over (N, K) logits,
multi-label counts by hand, batch-size independence for every activation, errors, JSON output.
Multi-class and multi-label segmentation: test_metrics_accumulator_multiclass.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segshield.errors import ModelOutputError
from segshield.metrics import (
    PER_IMAGE_KEYS,
    Accumulator,
    Activation,
    MultiClassAccumulator,
    SegmentationAccumulator,
    confusion_counts,
    dice,
    disagreement,
    mean_iou,
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


# The binary path, however it is built: the established factory, the unified accumulator
# with one sigmoid channel, and the multi-label factory with one channel.
BINARY_ACCUMULATORS = {
    "SegmentationAccumulator": SegmentationAccumulator,
    "Accumulator(SIGMOID, 1)": lambda: Accumulator(Activation.SIGMOID, 1),
    "Accumulator()": Accumulator,
    "MultiClassAccumulator(1, sigmoid)": lambda: MultiClassAccumulator(1, mode="sigmoid"),
}


@pytest.mark.parametrize("make", BINARY_ACCUMULATORS.values(), ids=BINARY_ACCUMULATORS.keys())
def test_golden_batch(make) -> None:
    # image 0: golden (tp 3, fp 1, fn 2, tn 10); image 1: both empty (tn 16)
    pred = np.stack([PRED, np.zeros((4, 4), bool)])[:, None]
    target = np.stack([TARGET, np.zeros((4, 4), np.uint8)])[:, None]
    acc = make()
    acc.update(_logits(pred), target)
    m = acc.result()
    assert (m.activation, m.num_classes, m.background, m.foreground) == ("sigmoid", 1, None, (0,))
    # totals: tp 3, fp 1, fn 2, tn 26 over 32 pixels
    assert (m.tp, m.fp, m.fn, m.tn, m.n_images) == (3, 1, 2, 26, 2)
    assert m.dice == 2 * 3 / (2 * 3 + 1 + 2)
    assert m.iou == 3 / 6
    assert m.mean_iou == pytest.approx((3 / 6 + 26 / 29) / 2, rel=1e-15)
    # binary mean_iou is still the Keras 2-class mean (foreground and background IoU), to the bit
    assert m.mean_iou == mean_iou(3, 1, 2, 26)
    assert m.accuracy == 29 / 32
    assert m.precision == 3 / 4
    assert m.recall == 3 / 5
    # per image L2: sqrt(3) and 0
    assert m.pixel_error_l2 == pytest.approx(math.sqrt(3) / 2, rel=1e-15)
    assert m.pixel_error_rms == pytest.approx(math.sqrt(3 / 32), rel=1e-15)
    # 3 wrong pixels of 32
    assert m.loss == pytest.approx((29 * RIGHT + 3 * WRONG) / 32, rel=1e-12)
    # image 1 has an empty ground truth: its per-image Dice/IoU are undefined (not the
    # empty_value 1.0), it is counted apart and left out of the per-image mean
    assert m.per_image["dice"][0] == 2 / 3 and math.isnan(m.per_image["dice"][1])
    assert m.n_empty_truth == 1
    assert m.dice_per_image_mean == 2 / 3
    assert m.per_image["iou"][0] == 0.5 and math.isnan(m.per_image["iou"][1])
    assert m.per_image["pixel_error_l2"] == [math.sqrt(3), 0.0]
    np.testing.assert_allclose(
        m.per_image["loss"], [(13 * RIGHT + 3 * WRONG) / 16, RIGHT], rtol=1e-12
    )
    assert set(m.per_image) == set(PER_IMAGE_KEYS)
    assert m.threshold == 0.5
    # the one class carries the same numbers as the foreground totals
    (c0,) = m.per_class
    assert (c0.tp, c0.fp, c0.fn, c0.tn) == (3, 1, 2, 26)
    assert (c0.dice, c0.iou, c0.precision, c0.recall) == (m.dice, m.iou, m.precision, m.recall)
    assert c0.foreground and c0.index == 0 and c0.name is None
    assert c0.dice_per_image == (2 / 3, 1.0)  # per-class values keep the empty_value
    assert m.mean_dice == m.dice
    counts = acc.counts()
    assert counts.tp.shape == (2, 1)
    assert counts.tp[:, 0].tolist() == [3, 0] and counts.tn[:, 0].tolist() == [10, 16]


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
    # every scalar score is a plain number; the structural fields the unified result added
    # (activation, class layout, per_class) are checked separately
    structural = {"per_image", "per_class", "activation", "foreground", "class_names", "background"}
    # surface distances: not measured by default (see test_metrics_surface.py), so null
    surface = {"hd95", "asd", "surface_unit", "spacing"}
    assert all(d[k] is None for k in surface) and d["n_surface_undefined"] == 0
    assert all(type(v) in (float, int) for k, v in d.items() if k not in structural | surface)
    assert d["activation"] == "sigmoid" and d["num_classes"] == 1
    assert d["foreground"] == [0] and d["background"] is None and d["class_names"] is None
    assert len(d["per_class"]) == 1 and d["per_class"][0]["tp"] == d["tp"]
    assert back == d


# --- classification: softmax over (N, K) logits, (N,) labels, no spatial axes -----------------

# Six images, three classes, logits 2.0 on the predicted class and 0.0 elsewhere.
CLS_LABELS = np.array([0, 1, 2, 2, 1, 0])
CLS_PREDS = np.array([0, 1, 1, 2, 0, 0])  # right: images 0, 1, 3, 5 -> 4 of 6
# class 0: labelled at 0, 5 -> both right (recall 2/2); predicted at 0, 4, 5 (precision 2/3)
# class 1: labelled at 1, 4 -> 1 right (recall 1/2);    predicted at 1, 2    (precision 1/2)
# class 2: labelled at 2, 3 -> 1 right (recall 1/2);    predicted at 3       (precision 1/1)
LSE3 = math.log(math.exp(2.0) + 2.0)  # cross-entropy: LSE - 2 when right, LSE when wrong


def test_classification_as_softmax_without_spatial_axes() -> None:
    logits = (np.eye(3, dtype=np.float32)[CLS_PREDS] * 2.0).astype(np.float32)  # (6, 3)
    acc = Accumulator(Activation.SOFTMAX, 3, background=None, keep_predictions=True)
    acc.update(logits, CLS_LABELS)
    m = acc.result()
    assert m.accuracy == 4 / 6  # share of images classified right
    assert m.accuracy == np.mean(CLS_PREDS == CLS_LABELS)
    # per-class recall is per-class accuracy (share of that class's images classified right)
    assert [c.recall for c in m.per_class] == [2 / 2, 1 / 2, 1 / 2]
    for k, c in enumerate(m.per_class):
        assert c.recall == np.mean(CLS_PREDS[np.equal(CLS_LABELS, k)] == k)
    assert [c.precision for c in m.per_class] == [2 / 3, 1 / 2, 1.0]
    assert [(c.tp, c.fp, c.fn, c.tn) for c in m.per_class] == [
        (2, 1, 0, 3),
        (1, 1, 1, 3),
        (1, 0, 1, 4),
    ]
    # background=None: every class is foreground, so recall is the balanced accuracy
    assert m.recall == pytest.approx((1 + 1 / 2 + 1 / 2) / 3, rel=1e-15)
    assert (m.tp, m.fp, m.fn, m.tn) == (4, 2, 2, 10)
    assert m.loss == pytest.approx((4 * (LSE3 - 2.0) + 2 * LSE3) / 6, rel=1e-12)
    assert m.per_image["loss"] == pytest.approx(
        [LSE3 - 2.0 if p == t else LSE3 for p, t in zip(CLS_PREDS, CLS_LABELS, strict=True)],
        rel=1e-12,
    )
    # one "pixel" per image: the wrong images have one wrong pixel each
    assert m.per_image["pixel_error_l2"] == [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert m.pixel_error_l2 == 2 / 6
    assert m.n_images == 6 and m.threshold is None
    assert acc.counts().tp.shape == (6, 3)
    # predictions: one label per image, (N, 1)
    assert acc.predictions().tolist() == [[p] for p in CLS_PREDS]
    # (N, 1) labels are accepted too, with the same result
    again = Accumulator(Activation.SOFTMAX, 3, background=None)
    again.update(logits, CLS_LABELS[:, None])
    assert again.result() == m


def test_classification_shape_errors() -> None:
    acc = Accumulator(Activation.SOFTMAX, 3)
    with pytest.raises(ValueError, match=r"got target \(6, 2\)"):
        acc.update(np.zeros((6, 3), np.float32), np.zeros((6, 2), int))
    with pytest.raises(ValueError, match=r"\(N,3,\.\.\.\).*logits \(6, 4\)"):
        acc.update(np.zeros((6, 4), np.float32), np.zeros(6, int))
    with pytest.raises(ValueError, match="max label found 3"):
        acc.update(np.zeros((6, 3), np.float32), np.full(6, 3))
    assert len(acc) == 0


# --- multi-label: sigmoid over C = 3 channels, counts by hand ---------------------------------

# Two 2x2 images, three independent channels.
ML_TARGET = np.array(
    [
        [[[1, 0], [1, 0]], [[1, 1], [1, 1]], [[0, 0], [0, 0]]],
        [[[0, 0], [0, 0]], [[1, 0], [0, 0]], [[0, 0], [1, 1]]],
    ],
    dtype=np.uint8,
)
ML_PRED = np.array(
    [
        [[[1, 1], [0, 0]], [[1, 1], [1, 1]], [[0, 0], [0, 1]]],
        [[[0, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [1, 1]]],
    ],
    dtype=bool,
)
# image 0: ch0 tp 1 fp 1 fn 1 tn 1; ch1 tp 4; ch2 fp 1 tn 3       -> 3 wrong channel-pixels
# image 1: ch0 tn 4;               ch1 fn 1 tn 3; ch2 tp 2 tn 2  -> 1 wrong channel-pixel
# totals:  ch0 (1, 1, 1, 5);       ch1 (4, 0, 1, 3); ch2 (2, 1, 0, 5)


def test_multilabel_per_class_counts_by_hand() -> None:
    acc = Accumulator(Activation.SIGMOID, 3)
    acc.update(_logits(ML_PRED), ML_TARGET)
    m = acc.result()
    assert (m.background, m.foreground) == (None, (0, 1, 2))
    c = acc.counts()
    assert c.tp.tolist() == [[1, 4, 0], [0, 0, 2]]
    assert c.fp.tolist() == [[1, 0, 1], [0, 0, 0]]
    assert c.fn.tolist() == [[1, 0, 0], [0, 1, 0]]
    assert c.tn.tolist() == [[1, 0, 3], [4, 3, 2]]
    assert [(k.tp, k.fp, k.fn, k.tn) for k in m.per_class] == [
        (1, 1, 1, 5),
        (4, 0, 1, 3),
        (2, 1, 0, 5),
    ]
    assert [k.dice for k in m.per_class] == [2 / 4, 8 / 9, 4 / 5]
    assert [k.iou for k in m.per_class] == [1 / 3, 4 / 5, 2 / 3]
    assert [k.precision for k in m.per_class] == [1 / 2, 1.0, 2 / 3]
    assert [k.recall for k in m.per_class] == [1 / 2, 4 / 5, 1.0]
    assert m.dice == pytest.approx((2 / 4 + 8 / 9 + 4 / 5) / 3, rel=1e-15)
    assert m.mean_iou == m.iou == pytest.approx((1 / 3 + 4 / 5 + 2 / 3) / 3, rel=1e-15)
    assert (m.tp, m.fp, m.fn, m.tn) == (7, 2, 2, 13)
    assert m.accuracy == 20 / 24  # right channel-pixels
    assert m.pixel_error_l2 == pytest.approx((math.sqrt(3) + 1.0) / 2, rel=1e-15)
    assert m.pixel_error_rms == pytest.approx(math.sqrt(4 / 24), rel=1e-15)
    assert m.loss == pytest.approx((20 * RIGHT + 4 * WRONG) / 24, rel=1e-12)
    # per image: ch0 2/4 and empty (1.0); ch1 1.0 and 0 (missed); ch2 0 (fp only) and 1.0
    assert [k.dice_per_image for k in m.per_class] == [(0.5, 1.0), (1.0, 0.0), (0.0, 1.0)]
    assert m.per_image["dice"] == pytest.approx([(0.5 + 1.0) / 3, 2 / 3], rel=1e-15)
    assert m.per_image["pixel_error_l2"] == [math.sqrt(3), 1.0]


# --- batch-size independence, every activation ------------------------------------------------


def _data(kind: str, n: int = 7, seed: int = 0) -> tuple[str, int, np.ndarray, np.ndarray]:
    """(activation, num_classes, logits, target) of one task kind."""
    rng = np.random.default_rng(seed)
    if kind == "binary":
        logits = rng.normal(0, 2, size=(n, 1, 6, 5))
        target = (rng.random((n, 1, 6, 5)) < 0.4).astype(np.uint8)
        target[2] = 0
        return Activation.SIGMOID, 1, logits.astype(np.float32), target
    if kind == "multilabel":
        logits = rng.normal(0, 2, size=(n, 3, 6, 5))
        target = (rng.random((n, 3, 6, 5)) < 0.3).astype(np.uint8)
        target[2, 1] = 0
        return "sigmoid", 3, logits.astype(np.float32), target
    if kind == "multiclass":
        logits = rng.normal(0, 2, size=(n, 4, 6, 5))
        target = rng.integers(0, 4, size=(n, 6, 5))
        target[2] = 0
        return Activation.SOFTMAX, 4, logits.astype(np.float32), target
    logits = rng.normal(0, 2, size=(n, 5))  # classification
    return "softmax", 5, logits.astype(np.float32), rng.integers(0, 5, size=n)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "multiclass", "classification"])
def test_batch_size_independence_every_activation(kind: str) -> None:
    activation, num_classes, logits, target = _data(kind)
    results, counts, preds = [], [], []
    for bs in (1, 2, len(logits)):
        acc = Accumulator(activation, num_classes, keep_predictions=True)
        for start in range(0, len(logits), bs):
            acc.update(logits[start : start + bs], target[start : start + bs])
        results.append(acc.result())
        counts.append(acc.counts())
        preds.append(acc.predictions())
    # to_dict: an empty-truth image's per-image Dice is NaN, and NaN != NaN in the dataclass
    assert results[0].to_dict() == results[1].to_dict() == results[2].to_dict()
    assert counts[0] == counts[1] == counts[2]
    np.testing.assert_array_equal(preds[0], preds[1])
    np.testing.assert_array_equal(preds[0], preds[2])
    assert results[0].n_images == 7
