"""Surface-distance metrics in NumPy/SciPy: the 95th-percentile Hausdorff distance (HD95) and
the average surface distance (ASD) of two binary masks, 2D or 3D, honouring the pixel/voxel
spacing.

The definitions are MONAI 1.6's ``compute_hausdorff_distance(percentile=95)`` (undirected)
and ``compute_average_surface_distance(symmetric=True)`` with ``distance_metric="euclidean"``,
which ``tests/metrics/test_metrics_surface.py`` checks on the same masks:

- the surface of a mask: its voxels that a binary erosion by the cross-shaped structure
  (face neighbours, scipy's default) removes; outside the array counts as background, so a
  mask touching the border has a surface there;
- the directed distances A -> B: for each surface voxel of A, the exact Euclidean distance
  (each axis scaled by its spacing) to the nearest surface voxel of B;
- HD95: the larger of the two directed 95th percentiles (linear interpolation, as
  ``torch.quantile`` and ``np.percentile``); ASD: the mean over both directed lists together.

Empty masks, as MONAI: both empty -> NaN (no surface to compare); exactly one empty -> +inf
(the missing surface is infinitely far). The accumulator turns these into the report's
conventions (see :class:`~segshield.metrics.SegmentationMetrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segshield.metrics.aggregate import nanmean

__all__ = [
    "SurfaceSummary",
    "SurfaceTracker",
    "average_surface_distance",
    "batch_spacing",
    "check_spacing",
    "hd95",
    "mask_surface",
    "summarize_surface",
    "surface_distances",
    "surface_scores",
    "surface_scores_batch",
]

Spacing = float | Sequence[float] | None


def check_spacing(spacing: Spacing, ndim: int) -> tuple[float, ...]:
    """``ndim`` positive finite spacings: None -> 1.0 (pixel units), a number -> isotropic.

    Raises:
        ValueError: the wrong number of values, or one that is not positive and finite.
    """
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (int, float, np.integer, np.floating)):
        values = (float(spacing),) * ndim
    else:
        values = tuple(float(s) for s in spacing)
    if len(values) != ndim:
        raise ValueError(
            f"spacing {list(values)} has {len(values)} values for {ndim} spatial axes: give one "
            f"per axis ((row, col) for 2D, (depth, row, col) for 3D)"
        )
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing {list(values)} must be positive and finite")
    return values


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim == 0:
        raise ValueError(
            f"pred and truth must be masks of the same shape, got {pred.shape} and {truth.shape}"
        )
    return pred.astype(bool, copy=False), truth.astype(bool, copy=False)


def _surface_padded(mask: np.ndarray) -> np.ndarray:
    """Surface of a mask whose outermost layer is all background (so no wrap-around)."""
    core = mask.copy()
    for axis in range(mask.ndim):
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        # a voxel stays in the core only if both face neighbours along every axis are in
        core[tuple(hi)] &= mask[tuple(lo)]
        core[tuple(lo)] &= mask[tuple(hi)]
    return mask & ~core


def mask_surface(mask: np.ndarray) -> np.ndarray:
    """Bool mask of the surface voxels of a binary mask (any shape), as MONAI's
    ``get_mask_edges``: the mask minus its erosion by the cross, outside = background."""
    mask = np.asarray(mask).astype(bool, copy=False)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    return _surface_padded(np.pad(mask, 1))[inner]


def _cropped(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union plus one background voxel on every
    side: the same surfaces and distances, on a far smaller array (lesions are small)."""
    union = pred | truth
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        idx = np.flatnonzero(union.any(axis=others))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    shape = tuple(s.stop - s.start + 2 for s in box)
    inner = tuple(slice(1, -1) for _ in shape)
    out = []
    for m in (pred, truth):
        padded = np.zeros(shape, dtype=bool)
        padded[inner] = m[tuple(box)]
        out.append(padded)
    return out[0], out[1]


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: Spacing = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (float64, in the spacing's unit): (pred -> truth, one per
    surface voxel of ``pred``; truth -> pred, one per surface voxel of ``truth``).

    A direction towards an empty mask is +inf for every voxel; one from an empty mask is an
    empty array. Raises ValueError on different shapes or a bad spacing.
    """
    pred, truth = _pair(pred, truth)
    sampling = check_spacing(spacing, pred.ndim)
    if not (pred.any() and truth.any()):
        sp, st = mask_surface(pred), mask_surface(truth)
        # at most one of these is non-empty: the distances towards the missing surface
        return np.full(int(sp.sum()), np.inf), np.full(int(st.sum()), np.inf)
    from scipy.ndimage import distance_transform_edt  # here: keeps `import segshield` light

    p, t = _cropped(pred, truth)
    sp, st = _surface_padded(p), _surface_padded(t)
    # exact Euclidean distance of every voxel to the nearest surface voxel of the other
    # mask (unit spacing passed as None: the same values, ~20 % faster in scipy)
    unit = None if all(v == 1.0 for v in sampling) else sampling
    to_truth = distance_transform_edt(~st, sampling=unit)[sp]
    to_pred = distance_transform_edt(~sp, sampling=unit)[st]
    return to_truth, to_pred


def _percentile(d: np.ndarray, q: float) -> float:
    """``np.percentile(d, q)`` (linear interpolation) by partial sort: d is non-empty."""
    pos = q / 100.0 * (d.size - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    part = np.partition(d, (lo, hi))
    return float(part[lo] + (part[hi] - part[lo]) * (pos - lo))


def surface_scores(
    pred: np.ndarray, truth: np.ndarray, spacing: Spacing = None, percentile: float = 95.0
) -> tuple[float, float]:
    """(HD at ``percentile``, symmetric ASD) of two binary masks: NaN when both are empty,
    +inf when exactly one is (MONAI's values). See the module docstring for definitions."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    pred, truth = _pair(pred, truth)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    check_spacing(spacing, pred.ndim)
    if not (has_pred or has_truth):
        return math.nan, math.nan
    if not (has_pred and has_truth):
        return math.inf, math.inf
    to_truth, to_pred = surface_distances(pred, truth, spacing)
    hd = max(_percentile(to_truth, percentile), _percentile(to_pred, percentile))
    asd = (float(to_truth.sum()) + float(to_pred.sum())) / (to_truth.size + to_pred.size)
    return hd, asd


def hd95(
    pred: np.ndarray, truth: np.ndarray, spacing: Spacing = None, percentile: float = 95.0
) -> float:
    """Symmetric 95th-percentile Hausdorff distance of two binary masks (same shape, 2D/3D),
    in the spacing's unit (pixels when None): NaN if both are empty, +inf if one is."""
    return surface_scores(pred, truth, spacing, percentile)[0]


def average_surface_distance(pred: np.ndarray, truth: np.ndarray, spacing: Spacing = None) -> float:
    """Symmetric average surface distance: the mean of both directed distance lists together,
    in the spacing's unit (pixels when None): NaN if both masks are empty, +inf if one is."""
    return surface_scores(pred, truth, spacing)[1]


def batch_spacing(spacing: Spacing | np.ndarray, n: int, ndim: int) -> np.ndarray:
    """(n, ndim) float64 spacings from None (1.0), one spacing for every image (a number or
    ``ndim`` values) or one row per image (n, ndim); ValueError naming the misfit."""
    arr = np.asarray(1.0 if spacing is None else spacing, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[0] != n:
            raise ValueError(f"per-image spacing has {arr.shape[0]} rows for {n} images")
        return np.array([check_spacing(row, ndim) for row in arr.tolist()]).reshape(n, ndim)
    one = check_spacing(arr.item() if arr.ndim == 0 else arr.tolist(), ndim)
    return np.tile(np.asarray(one, dtype=np.float64), (n, 1))


def surface_scores_batch(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Spacing | np.ndarray = None,
    channels: Sequence[int] | None = None,
    percentile: float = 95.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(HD, ASD) per image and channel of bool masks (N, C, *spatial), each (N, C) float64;
    NaN for a channel not in ``channels`` (default: all) and where both masks are empty,
    +inf where exactly one is. The distance transforms run only where both are non-empty.
    spacing: as :func:`batch_spacing` (one for all images, or one row per image)."""
    pred, truth = _pair(pred, truth)
    if pred.ndim < 3:
        raise ValueError(f"masks must be (N, C, *spatial), got shape {pred.shape}")
    n, c = pred.shape[:2]
    sampling = batch_spacing(spacing, n, pred.ndim - 2)
    hd, asd = np.full((n, c), np.nan), np.full((n, c), np.nan)
    spatial = tuple(range(2, pred.ndim))
    has_pred, has_truth = pred.any(axis=spatial), truth.any(axis=spatial)
    for k in range(c) if channels is None else channels:
        one = has_pred[:, k] != has_truth[:, k]
        hd[one, k] = asd[one, k] = np.inf
        for i in np.flatnonzero(has_pred[:, k] & has_truth[:, k]):
            sp = tuple(sampling[i].tolist())
            hd[i, k], asd[i, k] = surface_scores(pred[i, k], truth[i, k], sp, percentile)
    return hd, asd


@dataclass(frozen=True)
class SurfaceSummary:
    """Surface distances of a set of images, by the report's conventions (see
    :class:`~segshield.metrics.SegmentationMetrics`): ``*_per_image`` (N,), ``*_per_class``
    (C,), the means over images and ``n_undefined``; NaN where undefined."""

    hd95_per_image: np.ndarray
    asd_per_image: np.ndarray
    hd95_per_class: np.ndarray
    asd_per_class: np.ndarray
    hd95: float
    asd: float
    n_undefined: int
    spacings: np.ndarray | None = None  # (N, D) in mm, None: pixel units

    def per_image(self) -> dict[str, list[float]]:
        """The ``SegmentationMetrics.per_image`` entries: "hd95", "asd" -> N floats."""
        return {"hd95": self.hd95_per_image.tolist(), "asd": self.asd_per_image.tolist()}

    def fields(self) -> dict[str, Any]:
        """The ``SegmentationMetrics`` fields: ``surface_unit`` "pixel" or "mm", ``spacing``
        the one spacing of every image (None when they differ or in pixels)."""
        spacings, common = self.spacings, None
        if spacings is not None and len(spacings) and (spacings == spacings[0]).all():
            common = tuple(float(v) for v in spacings[0])
        return {
            "hd95": self.hd95,
            "asd": self.asd,
            "n_surface_undefined": self.n_undefined,
            "surface_unit": "pixel" if spacings is None else "mm",
            "spacing": common,
        }


def summarize_surface(
    hd: np.ndarray,
    asd: np.ndarray,
    truth_present: np.ndarray,
    foreground: Sequence[int],
    spacings: np.ndarray | None = None,
) -> SurfaceSummary:
    """Per-image, per-class and mean HD95/ASD from (N, C) values of :func:`surface_scores_batch`.

    truth_present: (N, C) bool, the class has ground-truth voxels in the image. Only those
    (image, class) pairs count: without a ground-truth surface there is nothing to measure
    (the image's false positives count in the pooled scores). An image's value is the mean
    over its foreground classes present in the ground truth; it is undefined (NaN, counted in
    ``n_undefined``) when the prediction misses one of them entirely (+inf), and NaN when no
    foreground class is present (an empty ground truth, counted as ``n_empty_truth``).
    """
    fg = list(foreground)
    present = np.asarray(truth_present, dtype=bool)
    # a present class has a finite distance, or +inf when the prediction missed it
    missed = (present & ~np.isfinite(hd))[:, fg].any(axis=1)
    out = []
    for values in (hd, asd):
        defined = np.where(present & np.isfinite(values), values, np.nan)
        per_image = nanmean(defined[:, fg], axis=1)
        per_image[missed] = np.nan
        out.append((per_image, nanmean(defined, axis=0), float(nanmean(per_image))))
    (hd_img, hd_cls, hd_mean), (asd_img, asd_cls, asd_mean) = out
    return SurfaceSummary(
        hd95_per_image=hd_img,
        asd_per_image=asd_img,
        hd95_per_class=hd_cls,
        asd_per_class=asd_cls,
        hd95=hd_mean,
        asd=asd_mean,
        n_undefined=int(np.count_nonzero(missed)),
        spacings=spacings,
    )


class SurfaceTracker:
    """The surface distances an accumulator collects batch by batch: (n, C) HD95/ASD and
    the (n, D) spacings (None: pixel units) of each batch, in update order."""

    def __init__(self, foreground: Sequence[int], spacing: Sequence[float] | None) -> None:
        self.foreground, self.spacing = tuple(foreground), spacing
        self.hd95: list[np.ndarray] = []
        self.asd: list[np.ndarray] = []
        self.batch_spacings: list[np.ndarray | None] = []

    def spacings(self, spacing: Spacing | np.ndarray, n: int, ndim: int) -> np.ndarray | None:
        """(n, D) spacings for a batch of (n, C, *spatial) logits (``ndim`` axes): the given
        ones, else the default; ValueError when they misfit or switch units mid-way."""
        spacing = self.spacing if spacing is None else spacing
        given = None if spacing is None else batch_spacing(spacing, n, ndim - 2)
        if self.batch_spacings and (given is None) != (self.batch_spacings[-1] is None):
            raise ValueError(
                "spacing given for some batches only: give it for every batch (mm) or none "
                "(pixels), so that the distances share one unit"
            )
        return given

    def add(self, pred: np.ndarray, truth: np.ndarray, spacings: np.ndarray | None) -> None:
        """One batch's bool masks (n, C, *spatial), foreground classes only."""
        hd, asd = surface_scores_batch(pred, truth, spacings, channels=self.foreground)
        self.hd95.append(hd)
        self.asd.append(asd)
        self.batch_spacings.append(spacings)

    def check_merge(self, other: SurfaceTracker) -> None:
        """ValueError unless ``other`` measured in the same unit (or nothing yet)."""
        if len({s is None for s in self.batch_spacings + other.batch_spacings}) > 1:
            raise ValueError("cannot merge surface distances in pixels with ones in mm")

    def merge(self, other: SurfaceTracker) -> None:
        """Append ``other``'s batches after this one's."""
        self.hd95 += other.hd95
        self.asd += other.asd
        self.batch_spacings += other.batch_spacings

    def summary(self, truth_present: np.ndarray) -> SurfaceSummary:
        """:func:`summarize_surface` of everything added; truth_present (N, C) bool."""
        pixels = not self.batch_spacings or self.batch_spacings[0] is None
        spacings = None if pixels else np.concatenate(self.batch_spacings)  # type: ignore[arg-type]
        return summarize_surface(
            np.concatenate(self.hd95),
            np.concatenate(self.asd),
            truth_present,
            self.foreground,
            spacings,
        )
