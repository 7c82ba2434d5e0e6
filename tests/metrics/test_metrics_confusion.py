"""Confusion counts: golden 4x4 case, accepted layouts/dtypes, validation errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from segshield.metrics import ConfusionCounts, binarize_logits, confusion_counts

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
    assert c.tp.tolist() == [3]
    assert c.fp.tolist() == [1]
    assert c.fn.tolist() == [2]
    assert c.tn.tolist() == [10]
    assert c.n_pixels.tolist() == [16]
    assert c.tp.dtype == np.int64


def test_batch_of_three_nhw_bool() -> None:
    empty = np.zeros((4, 4), dtype=bool)
    full = np.ones((4, 4), dtype=bool)
    pred = np.stack([PRED.astype(bool), empty, full])
    target = np.stack([TARGET.astype(bool), empty, empty])
    c = confusion_counts(pred, target)
    # image 1: both empty -> all tn; image 2: predicted everything, nothing there -> all fp
    assert c.tp.tolist() == [3, 0, 0]
    assert c.fp.tolist() == [1, 0, 16]
    assert c.fn.tolist() == [2, 0, 0]
    assert c.tn.tolist() == [10, 16, 0]
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
    assert cat.tp.tolist() == [1, 2, 7]
    assert cat.tn.tolist() == [4, 5, 1]
    tot = cat.total()
    assert tot == ConfusionCounts(tp=[10], fp=[2], fn=[4], tn=[10])
    assert tot.tp.shape == (1,)
    assert len(ConfusionCounts.concat([])) == 0


def test_counts_are_frozen_and_validated() -> None:
    c = ConfusionCounts(tp=[1], fp=[0], fn=[0], tn=[3])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tp = np.array([2])  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        c.tp[0] = 5
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
