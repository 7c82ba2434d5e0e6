"""Confusion counts (N, C): binary golden 4x4 case (C = 1), multi-class and multi-label counts
by hand, accepted layouts/dtypes, resampling/foreground sums, validation errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from segshield.metrics import (
    ClassConfusion,
    ConfusionCounts,
    binarize_logits,
    check_label_map,
    confusion_counts,
    multiclass_confusion_counts,
    multilabel_confusion_counts,
)

pytestmark = pytest.mark.filterwarnings("error")

# Golden 4x4 image. By hand:
#   tp: (0,0) (0,1) (3,3)  -> 3
#   fp: (0,2)              -> 1
#   fn: (2,0) (2,1)        -> 2
#   tn: 16 - 3 - 1 - 2     -> 10
PRED = np.array(
    [
        [1, 1, 1, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 1],
    ],
    dtype=np.uint8,
)
TARGET = np.array(
    [
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 1],
    ],
    dtype=np.uint8,
)


def test_golden_counts_nchw() -> None:
    c = confusion_counts(PRED[None, None], TARGET[None, None])
    assert c.tp.shape == (1, 1) and c.num_classes == 1  # binary is C = 1
    assert c.tp[:, 0].tolist() == [3]
    assert c.fp[:, 0].tolist() == [1]
    assert c.fn[:, 0].tolist() == [2]
    assert c.tn[:, 0].tolist() == [10]
    assert c.n_pixels[:, 0].tolist() == [16]
    assert c.tp.dtype == np.int64


def test_batch_of_three_nhw_bool() -> None:
    empty = np.zeros((4, 4), dtype=bool)
    full = np.ones((4, 4), dtype=bool)
    pred = np.stack([PRED.astype(bool), empty, full])
    target = np.stack([TARGET.astype(bool), empty, empty])
    c = confusion_counts(pred, target)
    # image 1: both empty -> all tn; image 2: predicted everything, nothing there -> all fp
    assert c.tp[:, 0].tolist() == [3, 0, 0]
    assert c.fp[:, 0].tolist() == [1, 0, 16]
    assert c.fn[:, 0].tolist() == [2, 0, 0]
    assert c.tn[:, 0].tolist() == [10, 16, 0]
    assert len(c) == 3


def test_float_and_int_zero_one_accepted() -> None:
    a = confusion_counts(PRED[None].astype(np.float32), TARGET[None].astype(np.int64))
    b = confusion_counts(PRED[None].astype(bool), TARGET[None].astype(bool))
    assert a == b


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\).*\(1, 4, 4\)"):
        confusion_counts(PRED[None, None], TARGET[None])


def test_multichannel_rejected() -> None:
    x = np.zeros((2, 2, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 4\)"):
        confusion_counts(x, x)


def test_non_binary_values_rejected_with_shape() -> None:
    bad = TARGET[None].astype(np.int64) * 255
    with pytest.raises(ValueError, match=r"target of shape \(1, 4, 4\) must be binary.*255"):
        confusion_counts(PRED[None], bad)
    probs = np.full((1, 4, 4), 0.7)
    with pytest.raises(ValueError, match=r"pred of shape \(1, 4, 4\) must be binary"):
        confusion_counts(probs, TARGET[None])
    nan = np.full((1, 4, 4), np.nan)
    with pytest.raises(ValueError, match="binary"):
        confusion_counts(nan, TARGET[None])


def test_total_and_concat() -> None:
    a = ConfusionCounts(tp=[1, 2], fp=[0, 1], fn=[3, 0], tn=[4, 5])
    b = ConfusionCounts(tp=[7], fp=[1], fn=[1], tn=[1])
    cat = ConfusionCounts.concat([a, b])
    assert cat.tp[:, 0].tolist() == [1, 2, 7]
    assert cat.tn[:, 0].tolist() == [4, 5, 1]
    tot = cat.total()
    assert tot == ConfusionCounts(tp=[10], fp=[2], fn=[4], tn=[10])
    assert tot.tp.shape == (1, 1)  # (1, C): 1-D inputs are one class, promoted to (N, 1)
    assert len(ConfusionCounts.concat([])) == 0
    assert ConfusionCounts.concat([]).tp.shape == (0, 1)


def test_counts_are_frozen_and_validated() -> None:
    c = ConfusionCounts(tp=[1], fp=[0], fn=[0], tn=[3])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tp = np.array([2])  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        c.tp[0, 0] = 5
    with pytest.raises(ValueError, match="share one shape"):
        ConfusionCounts(tp=[1, 2], fp=[0], fn=[0], tn=[0])
    with pytest.raises(ValueError, match="non-negative"):
        ConfusionCounts(tp=[-1], fp=[0], fn=[0], tn=[0])
    with pytest.raises(ValueError, match="integers"):
        ConfusionCounts(tp=[1.5], fp=[0], fn=[0], tn=[0])
    with pytest.raises(ValueError, match=r"shape \(\)"):
        ConfusionCounts(tp=1, fp=0, fn=0, tn=0)


def test_binarize_logits_rule() -> None:
    logits = np.array([-1.0, 0.0, 1e-6, 3.0, -50.0, 50.0], dtype=np.float32)
    # sigmoid(x) > 0.5  <=>  x > 0: a logit of exactly 0 is background.
    assert binarize_logits(logits).tolist() == [False, False, True, True, False, True]
    # sigmoid(-1) = 0.269 > 0.25; sigmoid(-50) ~ 2e-22 is not.
    assert binarize_logits(logits, 0.25).tolist() == [True, True, True, True, False, True]
    with pytest.raises(ValueError, match="threshold"):
        binarize_logits(logits, 1.0)


def test_resample_and_foreground_sum() -> None:
    # Two images, three classes.
    c = ConfusionCounts(
        tp=[[1, 2, 3], [10, 20, 30]],
        fp=[[0, 1, 0], [1, 0, 1]],
        fn=[[2, 0, 1], [0, 2, 0]],
        tn=[[7, 7, 6], [9, 8, 9]],
    )
    # Rows of image indices -> each row's counts summed: (R, N') -> (R, C).
    r = c.resample(np.array([[0, 0], [1, 0], [1, 1]]))
    assert r.tp.tolist() == [[2, 4, 6], [11, 22, 33], [20, 40, 60]]
    assert r.tn.tolist() == [[14, 14, 12], [16, 15, 15], [18, 16, 18]]
    assert r.resample(np.array([[0, 1, 2]])) == c.resample(np.array([[0, 0, 1, 0, 1, 1]]))
    # Summed over classes 1 and 2: (N, 1).
    f = c.foreground_sum((1, 2))
    assert f.tp.shape == (2, 1)
    assert f.tp[:, 0].tolist() == [5, 50]
    assert f.fp[:, 0].tolist() == [1, 1]
    assert f.fn[:, 0].tolist() == [1, 2]
    assert f.tn[:, 0].tolist() == [13, 17]
    assert c.foreground_sum((0,)) == c.for_class(0)
    assert c.for_class(2).tp.shape == (2, 1)
    assert c.for_class(2).tp[:, 0].tolist() == [3, 30]


# --- multi-class (label maps) and multi-label (per-channel masks) -----------------------------

from metrics_golden import GOLD3, PRED3, TARGET3  # noqa: E402


def test_multiclass_confusion_counts_golden() -> None:
    c = multiclass_confusion_counts(PRED3[None], TARGET3[None], 3)
    assert isinstance(c, ClassConfusion)
    assert ClassConfusion is ConfusionCounts  # one type; the old name is an alias
    assert (len(c), c.num_classes) == (1, 3)
    for k, expected in GOLD3.items():
        assert tuple(getattr(c, k)[0].tolist()) == expected, k
    assert c.n_pixels.tolist() == [[16, 16, 16]]
    # (N,1,H,W) label maps are accepted too
    assert multiclass_confusion_counts(PRED3[None, None], TARGET3[None, None], 3) == c


def test_multiclass_counts_match_binary_one_vs_rest() -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, size=(5, 7, 6))
    target = rng.integers(0, 4, size=(5, 1, 7, 6))
    c = multiclass_confusion_counts(pred[:, None], target, 4)
    for k, binary in enumerate(c.per_class()):
        assert binary == confusion_counts(pred == k, target[:, 0] == k)
    assert c.for_class(-1) == c.per_class()[3]
    t = c.total()
    assert len(t) == 1
    assert t.tp[0].tolist() == c.tp.sum(axis=0).tolist()
    assert ClassConfusion.concat([c, c]).tp.shape == (10, 4)


def test_class_confusion_concat_and_validation() -> None:
    a = multiclass_confusion_counts(PRED3[None], TARGET3[None], 3)
    b = multiclass_confusion_counts(TARGET3[None], TARGET3[None], 3)
    both = ClassConfusion.concat([a, b])
    assert both.tp.tolist() == [[6, 3, 3], [8, 4, 4]]
    assert ClassConfusion.concat([], num_classes=3).tp.shape == (0, 3)
    with pytest.raises(ValueError, match=r"different class counts: \[3, 4\]"):
        ClassConfusion.concat([a, multiclass_confusion_counts(PRED3[None], TARGET3[None], 4)])
    # Changed on purpose: 1-D counts used to be rejected here; one type now, so they are one
    # class, promoted to (N, 1). Anything else but 2-D is still rejected with its shape.
    assert ClassConfusion(tp=[1, 2, 3], fp=[1, 2, 3], fn=[1, 2, 3], tn=[1, 2, 3]).tp.shape == (
        3,
        1,
    )
    with pytest.raises(ValueError, match=r"\(N, C\).*got shape \(1, 1, 3\)"):
        ClassConfusion(tp=[[[1, 2, 3]]], fp=[[[1, 2, 3]]], fn=[[[1, 2, 3]]], tn=[[[1, 2, 3]]])
    with pytest.raises(ValueError, match="non-negative"):
        ClassConfusion(tp=[[-1]], fp=[[0]], fn=[[0]], tn=[[0]])
    with pytest.raises(IndexError, match="class index 3"):
        a.for_class(3)
    with pytest.raises(ValueError, match="read-only"):
        a.tp[0, 0] = 5  # read-only arrays: frozen all the way down


def test_multiclass_counts_errors_name_shapes_and_labels() -> None:
    with pytest.raises(ValueError, match=r"pred \(1, 4, 4\) vs target \(1, 4, 3\)"):
        multiclass_confusion_counts(PRED3[None], TARGET3[None, :, :3], 3)
    with pytest.raises(ValueError, match=r"\(N,H,W\) or \(N,1,H,W\).*\(1, 2, 4, 4\)"):
        multiclass_confusion_counts(np.zeros((1, 2, 4, 4), int), np.zeros((1, 2, 4, 4), int), 3)
    bad = TARGET3.copy()
    bad[0, 0] = 7
    with pytest.raises(ValueError, match=r"target of shape \(1, 4, 4\).*max label found 7"):
        multiclass_confusion_counts(PRED3[None], bad[None], 3)
    with pytest.raises(ValueError, match="min label found -1"):
        multiclass_confusion_counts(PRED3[None] - 1, TARGET3[None], 3)
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        multiclass_confusion_counts(PRED3[None], TARGET3[None], 0)


def test_check_label_map_dtypes() -> None:
    assert check_label_map("t", np.array([0.0, 2.0]), 3).tolist() == [0, 2]
    assert check_label_map("t", np.array([True, False]), 2).dtype == np.int64
    with pytest.raises(ValueError, match=r"not whole numbers, e\.g\. \[0\.5\]"):
        check_label_map("t", np.array([0.5, 1.0]), 3)
    with pytest.raises(ValueError, match="not whole numbers"):
        check_label_map("t", np.array([np.nan, 1.0]), 3)
    with pytest.raises(ValueError, match="dtype <U1"):
        check_label_map("t", np.array(["a"]), 3)


def test_multilabel_confusion_counts() -> None:
    pred = np.zeros((1, 2, 2, 2), bool)
    target = np.zeros((1, 2, 2, 2), np.uint8)
    pred[0, 0, 0, :] = True  # channel 0: predicted top row
    target[0, 0, :, 0] = 1  # channel 0: labelled left column -> tp 1, fp 1, fn 1, tn 1
    target[0, 1, 1, 1] = 1  # channel 1: nothing predicted -> tp 0, fp 0, fn 1, tn 3
    c = multilabel_confusion_counts(pred, target)
    assert c.tp.tolist() == [[1, 0]]
    assert c.fp.tolist() == [[1, 0]]
    assert c.fn.tolist() == [[1, 1]]
    assert c.tn.tolist() == [[1, 3]]
    with pytest.raises(ValueError, match=r"pred \(1, 2, 2, 2\) vs target \(1, 1, 2, 2\)"):
        multilabel_confusion_counts(pred, target[:, :1])
    with pytest.raises(ValueError, match=r"\(N,C,H,W\).*\(2, 2, 2\)"):
        multilabel_confusion_counts(pred[0], target[0])
    with pytest.raises(ValueError, match="must be binary"):
        multilabel_confusion_counts(pred, target * 2)


def test_multilabel_single_channel_equals_binary() -> None:
    pred, target = PRED[None, None], TARGET[None, None]
    assert multilabel_confusion_counts(pred, target) == confusion_counts(pred, target)
