"""Dataset-level scores as pure functions of summed confusion counts.

Each function takes a :class:`ConfusionCounts` of shape ``(R, C)`` whose rows are *sets of
images already summed* (``counts.total()`` for the dataset, ``counts.resample(idx)`` for
bootstrap resamples, or per-image counts for per-image scores) and returns a float64 ``(R,)``
array. Per-class ratios are one-vs-rest; means run over the ``foreground`` classes and skip
NaN entries (possible only with ``empty_value=nan``). One formula serves binary (C = 1),
multi-class, multi-label and classification alike.
"""

from __future__ import annotations

import numpy as np

from segshield.enums import Activation
from segshield.metrics.confusion import ConfusionCounts
from segshield.metrics.segmentation import dice, iou, mean_iou, precision, recall

__all__ = [
    "accuracy_of",
    "class_scores",
    "foreground_mean",
    "mean_dice_of",
    "mean_iou_of",
    "nanmean",
    "wrong_pixels",
]


def nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean skipping NaN, NaN where nothing is defined, without RuntimeWarnings."""
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    s = np.where(ok, x, 0.0).sum(axis=axis)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def foreground_mean(values: np.ndarray, foreground: tuple[int, ...]) -> np.ndarray:
    """(R, C) per-class values -> (R,) NaN-skipping mean over the foreground classes."""
    return nanmean(np.asarray(values, dtype=np.float64)[:, list(foreground)], axis=1)


def class_scores(c: ConfusionCounts, empty_value: float = 1.0) -> dict[str, np.ndarray]:
    """Per-class dice, iou, precision, recall, each (R, C)."""
    ev = empty_value
    return {
        "dice": np.asarray(dice(c.tp, c.fp, c.fn, ev), dtype=np.float64),
        "iou": np.asarray(iou(c.tp, c.fp, c.fn, ev), dtype=np.float64),
        "precision": np.asarray(precision(c.tp, c.fp, ev), dtype=np.float64),
        "recall": np.asarray(recall(c.tp, c.fn, ev), dtype=np.float64),
    }


def mean_dice_of(
    c: ConfusionCounts, foreground: tuple[int, ...] = (0,), empty_value: float = 1.0
) -> np.ndarray:
    """Foreground-mean Dice per row, (R,): the audit's ``dice``."""
    return foreground_mean(dice(c.tp, c.fp, c.fn, empty_value), foreground)


def mean_iou_of(
    c: ConfusionCounts, foreground: tuple[int, ...] = (0,), empty_value: float = 1.0
) -> np.ndarray:
    """Foreground-mean IoU per row, (R,): the audit's ``iou``."""
    return foreground_mean(iou(c.tp, c.fp, c.fn, empty_value), foreground)


def keras_mean_iou_of(c: ConfusionCounts, empty_value: float = 1.0) -> np.ndarray:
    """Binary (C = 1) only: mean of foreground and background IoU (Keras ``MeanIoU``), (R,)."""
    return np.asarray(mean_iou(c.tp[:, 0], c.fp[:, 0], c.fn[:, 0], c.tn[:, 0], empty_value))


def wrong_pixels(c: ConfusionCounts, activation: Activation) -> np.ndarray:
    """Wrongly predicted pixels per row, (R,): softmax, every wrong pixel is an fp of exactly
    one class; sigmoid, every wrong channel-pixel is an fp or fn of its channel."""
    if activation == Activation.SOFTMAX:
        return c.fp.sum(axis=1).astype(np.float64)
    return (c.fp + c.fn).sum(axis=1).astype(np.float64)


def decisions(c: ConfusionCounts, activation: Activation) -> np.ndarray:
    """Pixel decisions per row, (R,): pixels (softmax) or channel-pixels (sigmoid)."""
    n_pix = c.n_pixels
    if activation == Activation.SOFTMAX:
        return n_pix[:, 0].astype(np.float64) if n_pix.size else np.zeros(len(c))
    return n_pix.sum(axis=1).astype(np.float64)


def accuracy_of(c: ConfusionCounts, activation: Activation) -> np.ndarray:
    """Share of right decisions per row, (R,); NaN for a row with no pixels. For a classifier
    (one pixel per image) this is classification accuracy."""
    total = decisions(c, activation)
    right = total - wrong_pixels(c, activation)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, right / np.maximum(total, 1), np.nan)
