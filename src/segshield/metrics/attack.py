"""Metrics that compare two runs: clean vs adversarial scores, and engine vs engine masks."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from segshield.metrics.confusion import check_binary_mask
from segshield.metrics.segmentation import FloatOrArray

__all__ = ["attack_success", "disagreement", "fooled_shares", "label_disagreement"]


def attack_success(dice_clean: ArrayLike, dice_adv: ArrayLike) -> FloatOrArray:
    """Attack success AS = (dice_clean - dice_adv) / dice_clean (the "FGSM on U-Net family" AS).

    At most 1 (adversarial Dice 0), 0 when the attack changed nothing, negative when the attack
    improved the Dice. NaN where ``dice_clean`` is 0 (or NaN): there was nothing to degrade.

    Args:
        dice_clean, dice_adv: scalars or broadcastable arrays of Dice scores in [0, 1].

    Returns:
        float for scalar input, otherwise a float64 array of the broadcast shape.
    """
    clean = np.asarray(dice_clean, dtype=np.float64)
    adv = np.asarray(dice_adv, dtype=np.float64)
    try:
        clean, adv = np.broadcast_arrays(clean, adv)
    except ValueError:
        raise ValueError(
            f"dice_clean {clean.shape} and dice_adv {adv.shape} cannot be broadcast together"
        ) from None
    undefined = (clean == 0) | np.isnan(clean)
    out = np.where(undefined, np.nan, (clean - adv) / np.where(undefined, 1.0, clean))
    return float(out) if out.ndim == 0 else out


def disagreement(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """Per-image share of pixels where two binary predictions differ, in [0, 1].

    Args:
        pred_a, pred_b: binary masks of identical shape (N, ...), e.g. (N,1,H,W); bool or 0/1.

    Returns:
        float64 array of shape (N,).

    Raises:
        ValueError: shapes differ (both are named), no batch axis, or non-binary values.
    """
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"pred_a and pred_b shapes differ: pred_a {a.shape} vs pred_b {b.shape}")
    if a.ndim < 2:
        raise ValueError(f"pred_a and pred_b need a batch axis (N, ...), got shape {a.shape}")
    a = check_binary_mask("pred_a", a).reshape(a.shape[0], -1)
    b = check_binary_mask("pred_b", b).reshape(b.shape[0], -1)
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    return np.count_nonzero(a != b, axis=1) / a.shape[1]


def fooled_shares(
    source_clean: ArrayLike,
    source_adv: ArrayLike,
    engine_clean: ArrayLike,
    engine_adv: ArrayLike,
    threshold: float = 0.2,
) -> tuple[float, float]:
    """Share of images fooled on the source but not on the engine, and the reverse.

    An image counts as fooled when its per-image attack success (relative Dice drop) is at
    least `threshold`; images whose clean Dice is 0 on either side count as not fooled.
    Images whose per-image Dice is undefined (NaN or None in any of the four inputs: an empty
    ground truth, see :class:`~segshield.metrics.SegmentationMetrics`) are left out of both
    shares, numerator and denominator, rather than counted as not fooled.
    Inputs are per-image Dice arrays (N,). Returns (source_only, engine_only) in [0, 1]; NaN
    for both when no image is defined.
    """
    parts = [
        np.atleast_1d(np.asarray(x, dtype=np.float64))
        for x in (source_clean, source_adv, engine_clean, engine_adv)
    ]
    src = np.nan_to_num(np.atleast_1d(attack_success(parts[0], parts[1])), nan=-np.inf)
    eng = np.nan_to_num(np.atleast_1d(attack_success(parts[2], parts[3])), nan=-np.inf)
    if src.shape != eng.shape:
        raise ValueError(f"source {src.shape} and engine {eng.shape} per-image shapes differ")
    defined = ~np.any([np.isnan(np.broadcast_to(p, src.shape)) for p in parts], axis=0)
    if not defined.any():
        return math.nan, math.nan
    fooled_src, fooled_eng = src[defined] >= threshold, eng[defined] >= threshold
    return float(np.mean(fooled_src & ~fooled_eng)), float(np.mean(~fooled_src & fooled_eng))


def label_disagreement(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """Per-image share of pixels whose label differs between two predictions, in [0, 1].

    Works on both prediction kinds of :class:`MultiClassAccumulator`: label maps (N,H,W) are
    compared pixel by pixel; multi-label masks (N,C,H,W) count a pixel as differing when any
    channel differs (so a (N,1,H,W) binary mask gives the same as
    :func:`segshield.metrics.disagreement`). The binary ``disagreement`` rejects label maps
    with more than two classes and, on (N,C,H,W), divides by C*H*W channel-pixels instead.

    Args:
        pred_a, pred_b: identical shapes, (N,H,W) or (N,C,H,W); integer or bool.

    Returns:
        float64 array of shape (N,); NaN for images with no pixels.

    Raises:
        ValueError: shapes differ (both named), wrong rank, or a non-integer dtype.
    """
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"pred_a and pred_b shapes differ: pred_a {a.shape} vs pred_b {b.shape}")
    if a.ndim < 2:
        raise ValueError(
            f"pred_a and pred_b must be (N,H,W) label maps or (N,C,...) predictions, got shape "
            f"{a.shape}"
        )
    for name, arr in (("pred_a", a), ("pred_b", b)):
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be integer labels or bool masks, got dtype {arr.dtype}")
    differs = a != b
    if differs.ndim != 3:  # (N, C, *spatial), also (N, 1) of a classifier: any channel
        differs = differs.any(axis=1)
    differs = differs.reshape(differs.shape[0], -1)
    if differs.shape[1] == 0:
        return np.full(differs.shape[0], np.nan)
    return np.count_nonzero(differs, axis=1) / differs.shape[1]
