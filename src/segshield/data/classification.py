"""Image classification data derived from real segmentation data.

The seed paper (FGSM against a mammogram classifier) audits a CNN *classifier*; segshield ships
segmentation tiles. :func:`patch_classification_from_segmentation` turns them into a real binary
task: square patches of the images, labelled from how much of the patch the mask covers
("nucleus" when at least ``positive_min``, "background" when at most ``negative_max``, dropped
as ambiguous in between).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from segshield.data.dataset import SegDataset
from segshield.errors import DataError

__all__ = ["PATCH_CLASSES", "ClassificationDataset", "patch_classification_from_segmentation"]

PATCH_CLASSES = ("background", "nucleus")
"""Class names of the patch task: index 0 pure background, index 1 contains a nucleus."""

# Coverage comparisons are made on pixel counts; this absorbs float error in `frac * area`.
_COUNT_TOL = 1e-9


@dataclass(frozen=True)
class ClassificationDataset:
    """Images with one class label each, already preprocessed.

    images: float32 ``(N, C, h, w)`` in [0, 1]; labels: int64 ``(N,)`` in
    ``[0, len(classes))``; names: N identifiers; source: where it came from (for reports);
    classes: class names by index; meta: JSON-serialisable extras (how it was derived).
    """

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    source: str
    classes: tuple[str, ...] = PATCH_CLASSES
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.ndim != 4:
            raise DataError(
                f"images must be a (N, C, h, w) array, got {getattr(self.images, 'shape', None)}"
            )
        if self.images.dtype != np.float32:
            raise DataError(f"images must be float32, got {self.images.dtype}")
        if not isinstance(self.labels, np.ndarray) or self.labels.ndim != 1:
            raise DataError(
                f"labels must be a (N,) array, got {getattr(self.labels, 'shape', None)}"
            )
        if self.labels.dtype != np.int64:
            raise DataError(f"labels must be int64, got {self.labels.dtype}")
        n = self.images.shape[0]
        if self.labels.shape[0] != n or len(self.names) != n:
            raise DataError(
                f"{n} images, {self.labels.shape[0]} labels and {len(self.names)} names differ"
            )
        if n == 0:
            raise DataError(f"classification dataset {self.source!r} has no images")
        if len(self.classes) < 2:
            raise DataError(f"need at least 2 classes, got {self.classes!r}")
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= len(self.classes):
            raise DataError(
                f"labels must lie in [0, {len(self.classes) - 1}] for classes {self.classes}, "
                f"found [{lo}, {hi}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name, in class order (zero counts included)."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(counts[k]) for k, name in enumerate(self.classes)}

    def sha256(self) -> str:
        """Content hash of images, labels, names and class names: identifies the exact data."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update("\n".join(self.names).encode())
        h.update(b"\0" + "\n".join(self.classes).encode())
        return h.hexdigest()

    def subset(self, limit: int | None) -> ClassificationDataset:
        """The first `limit` images (all when None)."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise DataError(f"limit must be >= 1, got {limit}")
        return ClassificationDataset(
            self.images[:limit],
            self.labels[:limit],
            self.names[:limit],
            self.source,
            self.classes,
            self.meta,
        )

    def describe(self) -> dict:
        """JSON-serialisable summary for reports and model cards."""
        counts = self.class_counts()
        return {
            "source": self.source,
            "n_images": len(self),
            "image_shape": list(self.image_shape),
            "classes": list(self.classes),
            "class_counts": counts,
            "class_fractions": {k: v / len(self) for k, v in counts.items()},
            "sha256": self.sha256(),
            "names": list(self.names),
            **self.meta,
        }


def _check_fraction(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise DataError(f"{what} must be in [0, 1], got {value!r}")
    return v


def _check_patch_parameters(
    height: int, width: int, patch: int, stride: int, positive_min: float, negative_max: float
) -> tuple[float, float]:
    """Validate the patch grid and coverage thresholds; returns (positive_min, negative_max)."""
    for what, value in (("patch", patch), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{what} must be an integer >= 1, got {value!r}")
    if patch > min(height, width):
        raise DataError(f"patch {patch} does not fit images of {height}x{width} px")
    pos = _check_fraction(positive_min, "positive_min")
    neg = _check_fraction(negative_max, "negative_max")
    if not neg < pos:
        raise DataError(
            f"negative_max ({negative_max}) must be below positive_min ({positive_min})"
        )
    return pos, neg


def patch_classification_from_segmentation(
    ds: SegDataset,
    patch: int = 32,
    stride: int = 32,
    positive_min: float = 0.10,
    negative_max: float = 0.0,
) -> ClassificationDataset:
    """Cut ``patch x patch`` patches on a grid of step ``stride`` and label them from the mask.

    Args:
        ds: images ``(N, C, H, W)`` and binary masks ``(N, 1, H, W)``.
        patch: patch side in pixels (``<= min(H, W)``).
        stride: grid step; ``stride == patch`` gives non-overlapping tiles. Positions start at
            0 and stop where a full patch still fits (a remainder strip is not used).
        positive_min: label 1 ("nucleus") when the mask covers at least this share of the patch.
        negative_max: label 0 ("background") when it covers at most this share (0: pure
            background). Patches in between are dropped as ambiguous.

    Returns:
        A :class:`ClassificationDataset`: images ``(M, C, patch, patch)`` float32, labels
        ``(M,)`` int64, names ``"<image>@y<row>x<col>"``, in image then row-major grid order;
        ``meta`` records the parameters, the parent data's hash and how many were dropped.

    Raises:
        DataError: bad parameters, volumes instead of 2D images, or no patch kept.
    """
    if ds.ndim_spatial != 2:
        raise DataError(
            f"patches are cut from 2D images; {ds.source} holds volumes {ds.images.shape} "
            "(load them as slices)"
        )
    _, _, height, width = ds.images.shape
    pos, neg = _check_patch_parameters(height, width, patch, stride, positive_min, negative_max)
    area = patch * patch
    ys = range(0, height - patch + 1, stride)
    xs = range(0, width - patch + 1, stride)
    images, labels, names = [], [], []
    dropped = 0
    for i in range(len(ds)):
        for y in ys:
            for x in xs:
                covered = int(ds.masks[i, 0, y : y + patch, x : x + patch].sum(dtype=np.int64))
                if covered >= pos * area - _COUNT_TOL:
                    label = 1
                elif covered <= neg * area + _COUNT_TOL:
                    label = 0
                else:
                    dropped += 1
                    continue
                images.append(ds.images[i, :, y : y + patch, x : x + patch])
                labels.append(label)
                names.append(f"{ds.names[i]}@y{y:03d}x{x:03d}")
    if not images:
        raise DataError(
            f"no patch of {ds.source!r} is clearly background (coverage <= {neg}) or nucleus "
            f"(coverage >= {pos}); {dropped} ambiguous patches dropped"
        )
    meta = {
        "derived_from": ds.source,
        "parent_sha256": ds.sha256(),
        "patch": int(patch),
        "stride": int(stride),
        "positive_min": pos,
        "negative_max": neg,
        "dropped_ambiguous": dropped,
    }
    if "licence" in ds.meta:
        meta["licence"] = ds.meta["licence"]
    return ClassificationDataset(
        images=np.ascontiguousarray(np.stack(images), dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        names=tuple(names),
        source=f"{ds.source}:patches{patch}/{stride}",
        classes=PATCH_CLASSES,
        meta=meta,
    )
