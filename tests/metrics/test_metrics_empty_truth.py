"""Images whose ground truth has no foreground: counted apart (``n_empty_truth``), their
per-image Dice/IoU undefined (NaN) instead of a convention value, left out of
``dice_per_image_mean`` and of the per-image attack shares, while their false positives still
count in the pooled scores. Binary, multi-class, multi-label and classifier."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segshield.enums import Activation
from segshield.metrics import (
    Accumulator,
    MultiClassAccumulator,
    SegmentationAccumulator,
    attack_success,
    fooled_shares,
)
from segshield.tasks import make_task, metrics_record, per_image_record

pytestmark = pytest.mark.filterwarnings("error")

# 4x4 golden image: tp 3, fp 1, fn 2, tn 10 (Dice 2/3).
PRED = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=bool)
TARGET = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=np.uint8)
BLOB = np.zeros((4, 4), bool)
BLOB[1:3, 1:3] = True  # one false-positive blob of 4 pixels
EMPTY = np.zeros((4, 4), np.uint8)


def _logits(pred: np.ndarray) -> np.ndarray:
    return np.where(pred, 2.0, -2.0).astype(np.float32)


def _onehot(labels: np.ndarray, c: int) -> np.ndarray:
    return (np.eye(c, dtype=np.float32)[labels] * 4.0).transpose(0, 3, 1, 2)


def _binary(preds: list[np.ndarray], targets: list[np.ndarray]):
    acc = SegmentationAccumulator()
    acc.update(_logits(np.stack(preds)[:, None]), np.stack(targets)[:, None])
    return acc.result()


def test_binary_empty_truth_is_counted_apart_not_averaged() -> None:
    # image 0 golden; image 1 empty truth predicted empty; image 2 empty truth + one blob
    m = _binary([PRED, np.zeros((4, 4), bool), BLOB], [TARGET, EMPTY, EMPTY])
    assert m.n_images == 3 and m.n_empty_truth == 2
    assert m.per_image["dice"][0] == 2 / 3
    assert math.isnan(m.per_image["dice"][1]) and math.isnan(m.per_image["dice"][2])
    assert math.isnan(m.per_image["iou"][1]) and math.isnan(m.per_image["iou"][2])
    # the mean over non-empty-truth images only: not (2/3 + 1 + 0) / 3
    assert m.dice_per_image_mean == 2 / 3
    # pooled Dice still counts the blob's 4 false positives: 2*3 / (2*3 + 1 + 4 + 2)
    assert m.fp == 5 and m.dice == 6 / 13
    # other per-image values stay defined for every image
    assert m.per_image["pixel_error_l2"][2] == 2.0
    d = m.to_dict()
    assert d["n_empty_truth"] == 2 and d["per_image"]["dice"][1:] == [None, None]
    json.dumps(d, allow_nan=False)


def test_the_blob_no_longer_swings_the_per_image_mean() -> None:
    # Before: the empty-truth image's Dice went 1.0 (clean) -> 0.0 (one blob), the per-image
    # mean dropped by a third of the scale although one image only gained 4 wrong pixels.
    clean = _binary([PRED, np.zeros((4, 4), bool)], [TARGET, EMPTY])
    adv = _binary([PRED, BLOB], [TARGET, EMPTY])
    assert clean.dice_per_image_mean == adv.dice_per_image_mean == 2 / 3
    assert adv.dice < clean.dice  # the pooled Dice sees the blob


def test_every_image_empty_gives_an_undefined_mean() -> None:
    m = _binary([np.zeros((4, 4), bool), BLOB], [EMPTY, EMPTY])
    assert m.n_empty_truth == 2 and math.isnan(m.dice_per_image_mean)
    rec = metrics_record(m)
    assert rec.n_empty_truth == 2 and rec.dice_per_image_mean is None


def test_multiclass_empty_truth_is_no_foreground_class() -> None:
    # 3 classes, 0 = background. Image 0 has class 2 pixels; image 1 only background, and the
    # model predicts class 1 somewhere there (a false positive of a foreground class).
    t = np.zeros((2, 4, 4), np.int64)
    t[0, :2, :2] = 2
    p = t.copy()
    p[1, 3, 3] = 1
    acc = MultiClassAccumulator(3)
    acc.update(_onehot(p, 3), t)
    m = acc.result()
    assert m.n_empty_truth == 1
    assert math.isnan(m.per_image["dice"][1]) and not math.isnan(m.per_image["dice"][0])
    assert m.dice_per_image_mean == m.per_image["dice"][0]
    assert m.per_class[1].fp == 1  # still counted in the pooled per-class scores


def test_multilabel_empty_truth_is_no_positive_in_any_channel() -> None:
    # 2 channels; image 0 positive in channel 1 only (not empty); image 1 empty everywhere.
    target = np.zeros((2, 2, 4, 4), np.uint8)
    target[0, 1] = TARGET
    pred = target.astype(bool)
    acc = Accumulator(Activation.SIGMOID, 2)
    acc.update(_logits(pred), target)
    m = acc.result()
    assert m.n_empty_truth == 1
    assert not math.isnan(m.per_image["dice"][0]) and math.isnan(m.per_image["dice"][1])


def test_classifier_has_no_empty_truth() -> None:
    task = make_task("classification", num_classes=3)
    acc = task.accumulator()
    acc.update(np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], np.array([0, 1, 1, 0]))
    m = acc.result()
    assert m.n_empty_truth == 0
    assert metrics_record(m).n_empty_truth == 0


def test_task_records_carry_the_count_and_undefined_per_image_values() -> None:
    task = make_task("binary")
    acc = task.accumulator()
    acc.update(_logits(np.stack([PRED, BLOB])[:, None]), np.stack([TARGET, EMPTY])[:, None])
    m = acc.result()
    rec = metrics_record(m)
    assert rec.n_empty_truth == 1 and rec.dice_per_image_mean == 2 / 3
    per = per_image_record(m, acc.counts())
    assert per.dice == [2 / 3, None] and per.iou == [0.5, None]
    assert per.fp == [1, 4]  # the counts stay: what the panels rank empty-truth images by
    scores = task.image_scores(per)
    # consumers see NaN: per-image attack success of an empty-truth image is undefined
    assert math.isnan(attack_success(scores, scores)[1])


def test_fooled_shares_leave_undefined_images_out() -> None:
    # image 0: fooled on the source only; images 1-2: empty truth (undefined everywhere).
    nan = float("nan")
    only_src, only_eng = fooled_shares(
        [1.0, nan, None], [0.5, nan, None], [1.0, nan, None], [1.0, nan, None]
    )
    assert (only_src, only_eng) == (1.0, 0.0)  # was 1/3: undefined images diluted it
    both = fooled_shares([nan], [nan], [nan], [nan])
    assert all(math.isnan(x) for x in both)
