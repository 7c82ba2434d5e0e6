"""Bootstrap confidence intervals over images for metrics aggregated from confusion counts.

Images are resampled with replacement; each resample's metric is computed from its summed
counts (the same aggregation as the point estimate, :mod:`segshield.metrics.aggregate`), and
the percentile interval is returned. Counts are (N, C), so binary, multi-class, multi-label
and classification audits all get intervals. Paired statistics (attack success) resample the
same images for clean and adversarial counts. Resamples are scored from summed counts, never
from per-image Dice, so an image with an empty ground truth weighs in by its pixels (its false
positives count) and no per-image convention value enters an interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from segshield.metrics.aggregate import foreground_mean
from segshield.metrics.confusion import ConfusionCounts
from segshield.metrics.segmentation import dice

__all__ = [
    "Statistic",
    "bootstrap_attack_success_ci",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_stat",
    "interval",
]

# A statistic maps summed counts (R, C) to one value per row, (R,).
Statistic = Callable[[ConfusionCounts], np.ndarray]


def interval(samples: np.ndarray, level: float, n_boot: int) -> dict:
    """Percentile interval {"low", "high", "level", "n_boot"} of the finite samples."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return {"low": None, "high": None, "level": level, "n_boot": n_boot}
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return {"low": float(low), "high": float(high), "level": level, "n_boot": n_boot}


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_indices(n_images: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_images) indices drawn with replacement; share them to pair statistics."""
    if n_images < 1 or n_boot < 1:
        raise ValueError(f"need n_images >= 1 and n_boot >= 1, got {n_images}, {n_boot}")
    return np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))


def bootstrap_stat(
    counts: ConfusionCounts, stat: Statistic, *, indices: np.ndarray, level: float = 0.95
) -> dict:
    """Percentile CI of any count statistic (e.g. ``aggregate.accuracy_of``)."""
    _check_level(level)
    return interval(np.asarray(stat(counts.resample(indices))), level, indices.shape[0])


def bootstrap_ci(
    counts: ConfusionCounts,
    metric: Callable[..., np.ndarray] = dice,
    *,
    indices: np.ndarray,
    level: float = 0.95,
    empty_value: float = 1.0,
    foreground: tuple[int, ...] | None = None,
) -> dict:
    """Percentile CI of a per-class ratio f(tp, fp, fn, empty_value) (dice or iou), averaged
    over the ``foreground`` classes (default: every class) as the point estimate is.

    Returns {"low", "high", "level", "n_boot"}; low/high are None when no resample is finite.
    """
    fg = tuple(range(counts.num_classes)) if foreground is None else foreground

    def stat(c: ConfusionCounts) -> np.ndarray:
        return foreground_mean(metric(c.tp, c.fp, c.fn, empty_value=empty_value), fg)

    return bootstrap_stat(counts, stat, indices=indices, level=level)


def bootstrap_attack_success_ci(
    clean: ConfusionCounts,
    adv: ConfusionCounts,
    *,
    indices: np.ndarray,
    level: float = 0.95,
    empty_value: float = 1.0,
    foreground: tuple[int, ...] | None = None,
    stat: Statistic | None = None,
) -> dict:
    """Paired percentile CI of AS = (M_clean - M_adv) / M_clean over the same images. M is
    ``stat`` (e.g. accuracy for a classifier), by default the foreground-mean Dice."""
    _check_level(level)
    if len(clean) != len(adv):
        raise ValueError(f"clean has {len(clean)} images but adversarial has {len(adv)}")
    if stat is None:
        fg = tuple(range(clean.num_classes)) if foreground is None else foreground

        def stat(c: ConfusionCounts) -> np.ndarray:
            return foreground_mean(dice(c.tp, c.fp, c.fn, empty_value=empty_value), fg)

    m_clean, m_adv = stat(clean.resample(indices)), stat(adv.resample(indices))
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(m_clean > 0, (m_clean - m_adv) / m_clean, np.nan)
    return interval(values, level, indices.shape[0])
