"""The result types of :class:`~segshield.metrics.Accumulator`: one schema for every task."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from segshield.enums import Activation

__all__ = ["ClassMetrics", "SegmentationMetrics"]


def _json_float(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class ClassMetrics:
    """One class's one-vs-rest scores over the whole set (ratios in [0, 1]); ``hd95``/``asd``:
    mean over the images whose ground truth holds the class and whose prediction does too
    (NaN when none; None when surface distances were not measured)."""

    index: int
    name: str | None
    foreground: bool
    dice: float
    iou: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    tn: int
    dice_per_image: tuple[float, ...]
    hd95: float | None = None
    asd: float | None = None


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores of one model/engine on one set of images, for every task.

    ``dice``/``iou``/``precision``/``recall``: the NaN-skipping mean over the foreground
    classes of each class's ratio from its tp/fp/fn totals (binary: the one channel).
    ``mean_iou``: binary, the mean of foreground and background IoU (Keras ``MeanIoU``, seed
    unet-busi); otherwise the foreground-mean IoU. ``accuracy``: share of right pixel
    decisions (softmax: pixels; sigmoid: channel-pixels; classification: images). ``loss``:
    mean BCE (sigmoid) or cross-entropy (softmax) in nats per decision. ``pixel_error_l2``:
    mean over images of sqrt(wrong pixels); ``pixel_error_rms``: sqrt(wrong / decisions).
    ``tp``..``tn``: totals over the foreground classes. ``per_image``: ``PER_IMAGE_KEYS`` ->
    N floats in update order (foreground means per image). ``per_class``: every class.

    Empty ground truth: an image whose ground truth has no foreground (binary: no positive
    pixel; multi-class: no pixel of a foreground class in the label map; multi-label: no
    positive in any channel; never for a classifier) has no overlap to score, so its
    ``per_image["dice"]`` and ``["iou"]`` are NaN (JSON null) rather than a convention value:
    1 when the prediction is empty too, 0 as soon as one false-positive blob appears, which
    would swing a per-image mean or a per-image attack success by a whole image.
    ``n_empty_truth`` counts these images; ``dice_per_image_mean`` is the mean per-image Dice
    over the images with a non-empty ground truth only (NaN when there is none). Pooled scores
    (``dice`` ... ``recall``, ``accuracy``, pixel errors, loss) are summed over every image,
    so an empty-truth image's false positives still count there.
    ``ClassMetrics.dice_per_image`` keeps the per-class ``empty_value`` convention.

    Surface distances (``Accumulator(surface=True)``; None otherwise): ``per_image["hd95"]``
    and ``["asd"]`` are each image's symmetric 95th-percentile Hausdorff distance and average
    surface distance (:mod:`segshield.metrics.surface`, MONAI's definitions) in
    ``surface_unit`` ("pixel", or "mm" when a ``spacing`` was given), averaged over the
    foreground classes present in its ground truth. Undefined (NaN, JSON null): an image with
    an empty ground truth (nothing to measure; counted in ``n_empty_truth``, its false
    positives count in the pooled scores) and an image whose prediction misses a class of its
    ground truth entirely (no predicted surface; MONAI gives +inf/NaN), counted in
    ``n_surface_undefined``. ``hd95``/``asd``: the mean over the images where defined (NaN
    when none); a gate reads them as undefined (failing) when ``n_surface_undefined`` > 0,
    see :meth:`segshield.results.EngineEval.value`.
    """

    activation: Activation
    num_classes: int
    background: int | None
    foreground: tuple[int, ...]
    class_names: tuple[str, ...] | None
    accuracy: float
    loss: float
    dice: float
    iou: float
    mean_iou: float
    precision: float
    recall: float
    pixel_error_l2: float
    pixel_error_rms: float
    dice_per_image_mean: float
    n_images: int
    n_empty_truth: int
    tp: int
    fp: int
    fn: int
    tn: int
    threshold: float | None
    empty_value: float
    per_class: tuple[ClassMetrics, ...]
    per_image: dict[str, list[float]]
    hd95: float | None = None
    asd: float | None = None
    n_surface_undefined: int = 0
    surface_unit: str | None = None
    spacing: tuple[float, ...] | None = None

    @property
    def mean_dice(self) -> float:
        """The foreground-mean Dice (the name the multi-class results used)."""
        return self.dice

    def class_name(self, index: int) -> str:
        """Name of class ``index``: from ``class_names`` when given, else its index as str."""
        return self.class_names[index] if self.class_names is not None else str(index)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict for ``json.dumps(allow_nan=False)``; NaN/Inf become None."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "per_image":
                out[f.name] = {k: [_json_float(v) for v in vs] for k, vs in value.items()}
            elif f.name == "per_class":
                out[f.name] = [_class_dict(c) for c in value]
            elif f.name in ("foreground", "class_names", "spacing"):
                out[f.name] = None if value is None else list(value)
            elif f.name == "activation":
                out[f.name] = str(value)
            elif value is None or isinstance(value, (bool, str)):
                out[f.name] = value
            elif isinstance(value, (int, np.integer)):
                out[f.name] = int(value)
            else:
                out[f.name] = _json_float(value)
        return out


def _class_dict(c: ClassMetrics) -> dict[str, Any]:
    raw = {f.name: getattr(c, f.name) for f in fields(c)}
    for key in ("dice", "iou", "precision", "recall", "hd95", "asd"):
        raw[key] = _json_float(raw[key])
    raw["dice_per_image"] = [_json_float(v) for v in c.dice_per_image]
    return raw
