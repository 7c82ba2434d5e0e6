"""Segmentation metrics as pure functions of confusion counts.

Every function takes counts as scalars or arrays of any (broadcastable) shape, usually (N,) per
image or the totals of :meth:`ConfusionCounts.total`, and returns a float for scalar input or a
float64 array otherwise. Where a ratio's denominator is 0 (e.g. both masks empty, so the
foreground overlap is undefined) the function returns ``empty_value``: 1.0 by default, the
"perfect by convention" choice; pass ``float("nan")`` to leave such images undefined instead.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "dice",
    "iou",
    "mean_iou",
    "pixel_accuracy",
    "pixel_error_l2",
    "pixel_error_rms",
    "precision",
    "recall",
]

# A float for scalar input, a float64 array for array input.
FloatOrArray = float | np.ndarray


def _counts(**named: ArrayLike) -> list[np.ndarray]:
    out = []
    for name, value in named.items():
        arr = np.asarray(value)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"count {name} must be numeric, got dtype {arr.dtype}")
        if arr.size and np.any(arr < 0):
            raise ValueError(f"count {name} must be non-negative, got min {arr.min()}")
        out.append(arr.astype(np.float64, copy=False))
    return out


def _finish(x: np.ndarray) -> FloatOrArray:
    return float(x) if np.ndim(x) == 0 else x


def _ratio(num: np.ndarray, den: np.ndarray, empty_value: float) -> FloatOrArray:
    """num / den, with ``empty_value`` where den == 0 (no division warning is raised)."""
    num, den = np.broadcast_arrays(num, den)
    empty = den == 0
    out = np.divide(num, np.where(empty, 1.0, den))
    out = np.where(empty, float(empty_value), out)
    return _finish(out)


def dice(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, empty_value: float = 1.0) -> FloatOrArray:
    """Dice (F1) = 2tp / (2tp + fp + fn), in [0, 1]; ``empty_value`` where tp = fp = fn = 0."""
    tp_, fp_, fn_ = _counts(tp=tp, fp=fp, fn=fn)
    return _ratio(2.0 * tp_, 2.0 * tp_ + fp_ + fn_, empty_value)


def iou(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, empty_value: float = 1.0) -> FloatOrArray:
    """Foreground IoU (Jaccard) = tp / (tp + fp + fn), in [0, 1]; ``empty_value`` where 0/0."""
    tp_, fp_, fn_ = _counts(tp=tp, fp=fp, fn=fn)
    return _ratio(tp_, tp_ + fp_ + fn_, empty_value)


def mean_iou(
    tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, tn: ArrayLike, empty_value: float = 1.0
) -> FloatOrArray:
    """Mean of foreground IoU tp/(tp+fp+fn) and background IoU tn/(tn+fp+fn), in [0, 1].

    This is Keras ``MeanIoU(num_classes=2)`` on the binary masks, the "Mean IoU" of the U-Net
    BUSI paper. A class whose denominator is 0 (absent from both masks) counts as
    ``empty_value``; with the default 1.0 this equals Keras, which skips such classes (an
    absent class implies the other class is segmented perfectly).
    """
    tp_, fp_, fn_, tn_ = _counts(tp=tp, fp=fp, fn=fn, tn=tn)
    fg = np.asarray(_ratio(tp_, tp_ + fp_ + fn_, empty_value))
    bg = np.asarray(_ratio(tn_, tn_ + fp_ + fn_, empty_value))
    return _finish(0.5 * (fg + bg))


def pixel_accuracy(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, tn: ArrayLike) -> FloatOrArray:
    """(tp + tn) / n_pixels, in [0, 1]; NaN for an image with no pixels."""
    tp_, fp_, fn_, tn_ = _counts(tp=tp, fp=fp, fn=fn, tn=tn)
    return _ratio(tp_ + tn_, tp_ + fp_ + fn_ + tn_, float("nan"))


def precision(tp: ArrayLike, fp: ArrayLike, empty_value: float = 1.0) -> FloatOrArray:
    """tp / (tp + fp), in [0, 1]; ``empty_value`` where nothing was predicted (tp + fp = 0)."""
    tp_, fp_ = _counts(tp=tp, fp=fp)
    return _ratio(tp_, tp_ + fp_, empty_value)


def recall(tp: ArrayLike, fn: ArrayLike, empty_value: float = 1.0) -> FloatOrArray:
    """tp / (tp + fn), in [0, 1]; ``empty_value`` where the target is empty (tp + fn = 0)."""
    tp_, fn_ = _counts(tp=tp, fn=fn)
    return _ratio(tp_, tp_ + fn_, empty_value)


def pixel_error_l2(fp: ArrayLike, fn: ArrayLike) -> FloatOrArray:
    """L2 distance between the binary label and the binary prediction: sqrt(fp + fn), >= 0.

    The "pixel error" of AdvU-Net; it grows with image size, so compare it at fixed size.
    """
    fp_, fn_ = _counts(fp=fp, fn=fn)
    return _finish(np.sqrt(fp_ + fn_))


def pixel_error_rms(fp: ArrayLike, fn: ArrayLike, tn: ArrayLike, tp: ArrayLike) -> FloatOrArray:
    """Root-mean-square pixel error sqrt((fp + fn) / n_pixels), in [0, 1]; NaN with no pixels.

    Note the argument order (fp, fn, tn, tp): errors first.
    """
    fp_, fn_, tn_, tp_ = _counts(fp=fp, fn=fn, tn=tn, tp=tp)
    ratio = np.asarray(_ratio(fp_ + fn_, tp_ + fp_ + fn_ + tn_, float("nan")))
    return _finish(np.sqrt(ratio))
