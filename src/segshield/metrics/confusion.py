"""Per-image, per-class confusion counts: the one thing every metric is computed from.

One type, :class:`ConfusionCounts`, holds arrays of shape ``(N, C)``: N images (or N rows of
summed counts, e.g. bootstrap resamples), C classes. Binary segmentation is ``C = 1``;
multi-class (softmax) and multi-label (sigmoid) segmentation count each class one-vs-rest;
a classifier is a segmentation of one "pixel" per image. Every metric in
:mod:`segshield.metrics` is a pure function of these counts, so clean and adversarial runs,
engines and tasks are all scored from the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COUNT_NAMES",
    "ClassConfusion",
    "ConfusionCounts",
    "binarize_logits",
    "check_binary_mask",
    "check_label_map",
    "confusion_counts",
    "multiclass_confusion_counts",
    "multilabel_confusion_counts",
]

COUNT_NAMES = ("tp", "fp", "fn", "tn")


def _as_count_array(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 1:  # one class: (N,) -> (N, 1)
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"ConfusionCounts.{name} must be of shape (N, C) (or (N,) for one class), got "
            f"shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ConfusionCounts.{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and arr.min() < 0:
        raise ValueError(f"ConfusionCounts.{name} must be non-negative, got min {arr.min()}")
    arr.setflags(write=False)  # frozen all the way down
    return arr


@dataclass(frozen=True, eq=False)
class ConfusionCounts:
    """Per-image, per-class (one-vs-rest) true/false positive/negative pixel counts.

    ``tp[i, c]`` counts pixels of image i predicted c and labelled c, ``fp[i, c]`` predicted c
    but labelled otherwise, ``fn[i, c]`` labelled c but predicted otherwise, ``tn[i, c]`` the
    rest. 1-D inputs are one class and become ``(N, 1)``.

    Attributes:
        tp, fp, fn, tn: read-only int64 arrays of shape (N, C).
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def __post_init__(self) -> None:
        shapes = {}
        for name in COUNT_NAMES:
            arr = _as_count_array(name, getattr(self, name))
            object.__setattr__(self, name, arr)
            shapes[name] = arr.shape
        if len(set(shapes.values())) != 1:
            raise ValueError(f"ConfusionCounts arrays must share one shape (N, C), got {shapes}")

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in COUNT_NAMES)

    __hash__ = None  # type: ignore[assignment]  # equality is by value over mutable-typed arrays

    @property
    def num_classes(self) -> int:
        """C, the number of classes (channels)."""
        return int(self.tp.shape[1])

    @property
    def n_pixels(self) -> np.ndarray:
        """Pixels per image and class, int64 (N, C) (equal across C for one image)."""
        return self.tp + self.fp + self.fn + self.tn

    def total(self) -> ConfusionCounts:
        """Counts summed over images, shape (1, C): every metric takes per-image or summed
        counts alike, without special cases."""
        return ConfusionCounts(*(getattr(self, k).sum(axis=0, keepdims=True) for k in COUNT_NAMES))

    def resample(self, indices: np.ndarray) -> ConfusionCounts:
        """Counts summed over each row of image indices: (R, N') -> shape (R, C)."""
        return ConfusionCounts(*(getattr(self, k)[indices].sum(axis=1) for k in COUNT_NAMES))

    def foreground_sum(self, foreground: tuple[int, ...]) -> ConfusionCounts:
        """Counts summed over the given classes, shape (N, 1) (the audit's per-image view)."""
        cols = list(foreground)
        return ConfusionCounts(*(getattr(self, k)[:, cols].sum(axis=1) for k in COUNT_NAMES))

    def for_class(self, index: int) -> ConfusionCounts:
        """The one-vs-rest counts of one class, shape (N, 1)."""
        c = self.num_classes
        if not -c <= index < c:
            raise IndexError(f"class index {index} out of range for {c} classes")
        return ConfusionCounts(*(getattr(self, k)[:, index] for k in COUNT_NAMES))

    def per_class(self) -> list[ConfusionCounts]:
        """One (N, 1) ConfusionCounts per class, in class order."""
        return [self.for_class(c) for c in range(self.num_classes)]

    @staticmethod
    def concat(parts: Iterable[ConfusionCounts], num_classes: int = 1) -> ConfusionCounts:
        """Concatenate along the image axis, in order; an empty iterable gives (0, C).

        Raises:
            ValueError: the parts have different numbers of classes (all named).
        """
        items = list(parts)
        if not items:
            empty = np.zeros((0, num_classes), dtype=np.int64)
            return ConfusionCounts(empty, empty, empty, empty)
        classes = [p.num_classes for p in items]
        if len(set(classes)) != 1:
            raise ValueError(f"cannot concatenate counts with different class counts: {classes}")
        return ConfusionCounts(
            *(np.concatenate([getattr(p, k) for p in items]) for k in COUNT_NAMES)
        )


# One type: the name the multi-class code used stays importable.
ClassConfusion = ConfusionCounts


def check_binary_mask(name: str, mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` as a bool array; raise ValueError unless it holds only 0/1 (or bool)."""
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be bool or numeric 0/1, got dtype {arr.dtype}")
    is_one = arr == 1
    bad = ~(is_one | (arr == 0))  # NaN lands here too
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(
            f"{name} of shape {arr.shape} must be binary (0/1 or bool), but {n_bad} values are "
            f"not, e.g. {examples}"
        )
    return is_one


def check_label_map(name: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Return ``labels`` as int64; raise ValueError unless all lie in [0, num_classes).

    Accepts integer or bool dtypes, and floats that hold only whole numbers (masks read from
    image files); the shape is not checked here.
    """
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            examples = np.unique(arr[bad])[:5].tolist()
            raise ValueError(
                f"{name} of shape {arr.shape} must hold integer class labels, but {n_bad} "
                f"values are not whole numbers, e.g. {examples}"
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= num_classes:
            n_bad = int(np.count_nonzero((arr < 0) | (arr >= num_classes)))
            raise ValueError(
                f"{name} of shape {arr.shape} has {n_bad} labels outside [0, {num_classes}): "
                f"max label found {_num(hi)}, min label found {_num(lo)}"
            )
    return arr.astype(np.int64, copy=False)


def _num(x: Any) -> int | float:
    x = x.item() if isinstance(x, np.generic) else x
    return int(x) if float(x).is_integer() else float(x)


def _binary_counts(p: np.ndarray, t: np.ndarray) -> ConfusionCounts:
    """Counts of validated bool masks (N, C, ...) -> (N, C); no checks."""
    n, c = p.shape[:2]
    p, t = p.reshape(n, c, -1), t.reshape(n, c, -1)
    tp = np.count_nonzero(p & t, axis=2)
    fp = np.count_nonzero(p & ~t, axis=2)
    fn = np.count_nonzero(~p & t, axis=2)
    return ConfusionCounts(tp, fp, fn, p.shape[2] - tp - fp - fn)


def _one_channel_pair(pred: object, target: object, form: str) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of one shape, (N, H, W) or (N, 1, H, W); ValueError naming both shapes."""
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: pred {p.shape} vs target {t.shape}")
    if p.ndim not in (3, 4) or (p.ndim == 4 and p.shape[1] != 1):
        raise ValueError(f"pred and target must be {form}, got pred {p.shape} and target {t.shape}")
    return p, t


def confusion_counts(pred: np.ndarray, target: np.ndarray) -> ConfusionCounts:
    """Counts of binary masks, shape (N, 1).

    Args:
        pred, target: same shape, (N,1,H,W) or (N,H,W); bool or numeric with values in {0, 1}.

    Raises:
        ValueError: shapes differ (both are named), wrong rank, or non-binary values.
    """
    p, t = _one_channel_pair(pred, target, "(N,1,H,W) or (N,H,W) binary masks")
    pb, tb = check_binary_mask("pred", p), check_binary_mask("target", t)
    n = pb.shape[0]
    return _binary_counts(pb.reshape(n, 1, -1), tb.reshape(n, 1, -1))


def multilabel_confusion_counts(pred: np.ndarray, target: np.ndarray) -> ConfusionCounts:
    """Per-channel counts of independent binary masks (multi-label, sigmoid heads).

    Args:
        pred, target: same shape (N,C,H,W) (or (N,C,D,H,W)); bool or numeric in {0, 1}.

    Returns:
        ConfusionCounts of shape (N, C).
    """
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: pred {p.shape} vs target {t.shape}")
    if p.ndim < 4:
        raise ValueError(
            f"pred and target must be (N,C,H,W) multi-label masks, got pred {p.shape} and "
            f"target {t.shape}"
        )
    return _binary_counts(check_binary_mask("pred", p), check_binary_mask("target", t))


def labels_confusion(pred: np.ndarray, target: np.ndarray, c: int) -> ConfusionCounts:
    """Counts of validated int64 label maps of equal shape (N, ...) -> (N, C); no checks."""
    n = pred.shape[0]
    p, t = pred.reshape(n, -1), target.reshape(n, -1)
    # One bincount over (image, true, predicted) gives every image's C x C confusion matrix.
    idx = (np.arange(n, dtype=np.int64)[:, None] * (c * c) + t * c + p).ravel()
    cm = np.bincount(idx, minlength=n * c * c).reshape(n, c, c)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fn = cm.sum(axis=2) - tp  # labelled c, predicted something else
    fp = cm.sum(axis=1) - tp  # predicted c, labelled something else
    return ConfusionCounts(tp, fp, fn, p.shape[1] - tp - fp - fn)


def multiclass_confusion_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int
) -> ConfusionCounts:
    """Per-image one-vs-rest counts of every class of two integer label maps.

    Args:
        pred, target: same shape, (N,H,W) or (N,1,H,W); integer labels in [0, num_classes)
            (bool, or floats holding whole numbers, are accepted too).
        num_classes: C >= 1.

    Returns:
        ConfusionCounts of shape (N, C).

    Raises:
        ValueError: shapes differ (both named), wrong rank, non-integer labels, or a label
            outside [0, C) (the max and min labels found are named).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    p, t = _one_channel_pair(pred, target, "(N,H,W) or (N,1,H,W) label maps")
    c = int(num_classes)
    return labels_confusion(check_label_map("pred", p, c), check_label_map("target", t, c), c)


def binarize_logits(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground mask ``sigmoid(logits) > threshold`` as bool, same shape as ``logits``.

    Compared in logit space (``logits > log(t / (1 - t))``), which is the same decision without
    float32 sigmoid saturation flipping pixels near 0 or 1; at 0.5 a logit of exactly 0 is
    background. Use this everywhere predictions are made so engines agree on the rule.

    Args:
        logits: float array of any shape.
        threshold: probability threshold, strictly inside (0, 1).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    cut = float(np.log(threshold) - np.log1p(-threshold))
    return np.asarray(logits) > cut
