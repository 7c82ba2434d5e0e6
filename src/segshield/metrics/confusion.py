"""Per-image confusion counts of binary segmentation masks, and the one binarisation rule.

Every metric in :mod:`segshield.metrics` is a pure function of these counts, so clean and
adversarial runs, and different engines, are scored from the same four numbers per image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["ConfusionCounts", "binarize_logits", "check_binary_mask", "confusion_counts"]


def _as_count_array(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"ConfusionCounts.{name} must be 1-D of shape (N,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ConfusionCounts.{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and arr.min() < 0:
        raise ValueError(f"ConfusionCounts.{name} must be non-negative, got min {arr.min()}")
    # Read-only so that the frozen dataclass is frozen all the way down.
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ConfusionCounts:
    """Per-image true/false positive/negative pixel counts.

    Attributes:
        tp, fp, fn, tn: read-only int64 arrays of shape (N,), one entry per image.
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def __post_init__(self) -> None:
        shapes = {}
        for name in ("tp", "fp", "fn", "tn"):
            arr = _as_count_array(name, getattr(self, name))
            object.__setattr__(self, name, arr)
            shapes[name] = arr.shape
        if len(set(shapes.values())) != 1:
            raise ValueError(f"ConfusionCounts arrays must share one shape (N,), got {shapes}")

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("tp", "fp", "fn", "tn")
        )

    __hash__ = None  # type: ignore[assignment]  # equality is by value over mutable-typed arrays

    @property
    def n_pixels(self) -> np.ndarray:
        """Pixels per image, int64 of shape (N,)."""
        return self.tp + self.fp + self.fn + self.tn

    def total(self) -> ConfusionCounts:
        """Counts summed over images, as a ConfusionCounts of shape (1,).

        Returning the same type (rather than scalars) lets every metric function take either a
        per-image or a dataset-level count without special cases; use ``.tp[0]`` for a scalar.
        """
        return ConfusionCounts(
            tp=np.array([self.tp.sum()], dtype=np.int64),
            fp=np.array([self.fp.sum()], dtype=np.int64),
            fn=np.array([self.fn.sum()], dtype=np.int64),
            tn=np.array([self.tn.sum()], dtype=np.int64),
        )

    @staticmethod
    def concat(parts: Iterable[ConfusionCounts]) -> ConfusionCounts:
        """Concatenate along the image axis, in order; an empty iterable gives N = 0."""
        items = list(parts)
        if not items:
            empty = np.zeros(0, dtype=np.int64)
            return ConfusionCounts(tp=empty, fp=empty, fn=empty, tn=empty)
        return ConfusionCounts(
            tp=np.concatenate([p.tp for p in items]),
            fp=np.concatenate([p.fp for p in items]),
            fn=np.concatenate([p.fn for p in items]),
            tn=np.concatenate([p.tn for p in items]),
        )


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


def _check_mask_pair(
    pred: np.ndarray, target: np.ndarray, names: tuple[str, str] = ("pred", "target")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two masks of identical shape (N,1,H,W) or (N,H,W); return them as bool."""
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} shapes differ: {names[0]} {p.shape} vs {names[1]} {t.shape}"
        )
    if p.ndim not in (3, 4) or (p.ndim == 4 and p.shape[1] != 1):
        raise ValueError(
            f"{names[0]} and {names[1]} must be (N,1,H,W) or (N,H,W) binary masks, got "
            f"{names[0]} {p.shape} and {names[1]} {t.shape}"
        )
    return check_binary_mask(names[0], p), check_binary_mask(names[1], t)


def confusion_counts(pred: np.ndarray, target: np.ndarray) -> ConfusionCounts:
    """Per-image confusion counts of binary masks.

    Args:
        pred, target: same shape, (N,1,H,W) or (N,H,W); bool or numeric with values in {0, 1}.

    Returns:
        ConfusionCounts with arrays of shape (N,).

    Raises:
        ValueError: shapes differ (both are named), wrong rank, or non-binary values.
    """
    p, t = _check_mask_pair(pred, target)
    n = p.shape[0]
    p = p.reshape(n, -1)
    t = t.reshape(n, -1)
    tp = np.count_nonzero(p & t, axis=1)
    fp = np.count_nonzero(p & ~t, axis=1)
    fn = np.count_nonzero(~p & t, axis=1)
    tn = p.shape[1] - tp - fp - fn
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=np.asarray(tn))


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
