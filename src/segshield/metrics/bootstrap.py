"""Bootstrap confidence intervals over images for metrics aggregated from confusion counts.

Images are resampled with replacement; each resample's metric is computed from its summed
counts (the same aggregation as the point estimate), and the percentile interval is returned.
Paired statistics (attack success) resample the same images for clean and adversarial counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from segshield.metrics.confusion import ConfusionCounts
from segshield.metrics.segmentation import dice


def _resampled_sums(
    counts: ConfusionCounts, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """idx: (n_boot, N) image indices -> summed tp, fp, fn, tn of shape (n_boot,)."""
    return (
        counts.tp[idx].sum(axis=1),
        counts.fp[idx].sum(axis=1),
        counts.fn[idx].sum(axis=1),
        counts.tn[idx].sum(axis=1),
    )


def _interval(samples: np.ndarray, level: float, n_boot: int) -> dict:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return {"low": None, "high": None, "level": level, "n_boot": n_boot}
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return {"low": float(low), "high": float(high), "level": level, "n_boot": n_boot}


def bootstrap_indices(n_images: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_images) indices drawn with replacement; share them to pair statistics."""
    if n_images < 1 or n_boot < 1:
        raise ValueError(f"need n_images >= 1 and n_boot >= 1, got {n_images}, {n_boot}")
    return np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))


def bootstrap_ci(
    counts: ConfusionCounts,
    metric: Callable[..., np.ndarray] = dice,
    *,
    indices: np.ndarray,
    level: float = 0.95,
    empty_value: float = 1.0,
) -> dict:
    """Percentile CI of a count-based metric (dice or iou: f(tp, fp, fn, empty_value)).

    Returns {"low", "high", "level", "n_boot"}; low/high are None when no resample is finite.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tp, fp, fn, _ = _resampled_sums(counts, indices)
    values = np.asarray(metric(tp, fp, fn, empty_value=empty_value), dtype=np.float64)
    return _interval(values, level, indices.shape[0])


def bootstrap_attack_success_ci(
    clean: ConfusionCounts,
    adv: ConfusionCounts,
    *,
    indices: np.ndarray,
    level: float = 0.95,
    empty_value: float = 1.0,
) -> dict:
    """Paired percentile CI of AS = (Dice_clean - Dice_adv) / Dice_clean over the same images."""
    if len(clean) != len(adv):
        raise ValueError(f"clean has {len(clean)} images but adversarial has {len(adv)}")
    c_tp, c_fp, c_fn, _ = _resampled_sums(clean, indices)
    a_tp, a_fp, a_fn, _ = _resampled_sums(adv, indices)
    d_clean = np.asarray(dice(c_tp, c_fp, c_fn, empty_value=empty_value), dtype=np.float64)
    d_adv = np.asarray(dice(a_tp, a_fp, a_fn, empty_value=empty_value), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(d_clean > 0, (d_clean - d_adv) / d_clean, np.nan)
    return _interval(values, level, indices.shape[0])
