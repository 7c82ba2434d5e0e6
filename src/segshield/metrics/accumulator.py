"""Accumulate per-image counts and losses over batches; aggregate once at the end.

Dataset-level scores come from counts summed over all images (not from averaging batch scores),
so the result does not depend on the batch size or on how the data was split into batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from segshield.errors import ModelOutputError
from segshield.metrics.confusion import ConfusionCounts, binarize_logits, confusion_counts
from segshield.metrics.losses import bce_logits_per_pixel
from segshield.metrics.segmentation import (
    dice,
    iou,
    mean_iou,
    pixel_accuracy,
    pixel_error_l2,
    pixel_error_rms,
    precision,
    recall,
)

__all__ = ["PER_IMAGE_KEYS", "SegmentationAccumulator", "SegmentationMetrics"]

PER_IMAGE_KEYS: tuple[str, ...] = ("dice", "iou", "pixel_error_l2", "loss")


def _first(x: float | np.ndarray) -> float:
    """The single value of a metric computed on totals of shape (1,)."""
    return float(np.asarray(x).reshape(-1)[0])


def _json_float(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores of one model/engine on one dataset.

    Ratios are in [0, 1] and computed from the tp/fp/fn/tn totals over all images; ``loss`` is
    the mean per-pixel BCE (nats) over all pixels; ``pixel_error_l2`` is the mean over images
    of sqrt(fp + fn); ``pixel_error_rms`` is sqrt((fp + fn) / n_pixels) over all pixels;
    ``dice_per_image_mean`` is the mean of per-image Dice (NaN entries, possible only with
    ``empty_value=nan``, are skipped). ``per_image`` maps each of ``PER_IMAGE_KEYS`` to a list
    of N floats in update order.
    """

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
    tp: int
    fp: int
    fn: int
    tn: int
    threshold: float
    empty_value: float
    per_image: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict for ``json.dumps``: floats, ints, lists; NaN/Inf become None."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "per_image":
                out[f.name] = {k: [_json_float(v) for v in vs] for k, vs in value.items()}
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                out[f.name] = int(value)
            else:
                out[f.name] = _json_float(value)
        return out


class SegmentationAccumulator:
    """Collects per-image confusion counts, BCE losses and (optionally) predictions.

    Args:
        keep_predictions: also keep the binary masks, for :meth:`predictions` (e.g. to compute
            disagreement between engines). Costs N*H*W bytes.
        empty_value: value of Dice/IoU/precision/recall (and a class IoU in mean IoU) where the
            denominator is 0, e.g. both masks empty; 1.0 = perfect by convention, or NaN.
    """

    def __init__(self, keep_predictions: bool = False, empty_value: float = 1.0) -> None:
        self.keep_predictions = keep_predictions
        self.empty_value = float(empty_value)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._counts: list[ConfusionCounts] = []
        self._loss_sums: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []
        self._threshold: float | None = None

    @property
    def n_images(self) -> int:
        """Number of images accumulated so far."""
        return sum(len(c) for c in self._counts)

    def __len__(self) -> int:
        return self.n_images

    def update(self, logits: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> None:
        """Add one batch.

        Args:
            logits: float array (N,1,H,W) of raw model outputs (before sigmoid); finite.
            target: array (N,1,H,W) of ground-truth masks, bool or {0, 1}.
            threshold: probability threshold in (0, 1); a pixel is foreground when
                sigmoid(logit) > threshold. Must be the same for every update.

        Raises:
            ModelOutputError: logits contain NaN or Inf (the message gives how many).
            ValueError: shapes differ or are not (N,1,H,W) (both named), non-binary target,
                non-float logits, threshold outside (0, 1) or changed between updates.
        """
        logits = np.asarray(logits)
        target = np.asarray(target)
        if logits.shape != target.shape or logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(
                f"logits and target must both be (N,1,H,W) with the same shape, got logits "
                f"{logits.shape} and target {target.shape}"
            )
        if not np.issubdtype(logits.dtype, np.floating):
            raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
        if self._threshold is not None and threshold != self._threshold:
            # Mixing thresholds would make the aggregated counts meaningless.
            raise ValueError(
                f"threshold changed from {self._threshold} to {threshold}; call reset() first"
            )
        finite = np.isfinite(logits)
        if not finite.all():
            n_bad = logits.size - int(np.count_nonzero(finite))
            n_nan = int(np.count_nonzero(np.isnan(logits)))
            raise ModelOutputError(
                f"model output of shape {logits.shape} has {n_bad} non-finite values of "
                f"{logits.size} ({n_nan} NaN, {n_bad - n_nan} Inf)"
            )
        pred = binarize_logits(logits, threshold)
        counts = confusion_counts(pred, target)  # validates that target is binary
        per_pixel = bce_logits_per_pixel(logits, target.astype(np.float64))
        self._threshold = float(threshold)
        self._counts.append(counts)
        # Per-image sums (not means) so the global mean is exact whatever the image sizes.
        self._loss_sums.append(per_pixel.reshape(per_pixel.shape[0], -1).sum(axis=1))
        if self.keep_predictions:
            self._preds.append(pred.copy())

    def counts(self) -> ConfusionCounts:
        """Per-image confusion counts of everything accumulated, shape (N,)."""
        return ConfusionCounts.concat(self._counts)

    def predictions(self) -> np.ndarray:
        """Binary predictions of all accumulated images, bool (N,1,H,W), in update order.

        Raises:
            RuntimeError: the accumulator was made without ``keep_predictions=True``.
            ValueError: updates had different image sizes (shapes named).
        """
        if not self.keep_predictions:
            raise RuntimeError("predictions were not kept: use keep_predictions=True")
        if not self._preds:
            return np.zeros((0, 1, 0, 0), dtype=bool)
        shapes = {p.shape[1:] for p in self._preds}
        if len(shapes) > 1:
            raise ValueError(f"cannot stack predictions of different sizes: {sorted(shapes)}")
        return np.concatenate(self._preds, axis=0)

    def result(self) -> SegmentationMetrics:
        """Aggregate everything accumulated so far.

        Raises:
            RuntimeError: nothing has been accumulated.
        """
        if self.n_images == 0:
            raise RuntimeError("no images accumulated: call update() before result()")
        c = self.counts()
        t = c.total()
        ev = self.empty_value
        n_pix = c.n_pixels
        loss_sums = np.concatenate(self._loss_sums)
        # fsum: exact, so the total loss does not depend on how images were batched.
        total_pixels = int(n_pix.sum())
        loss = math.fsum(loss_sums.tolist()) / total_pixels if total_pixels else math.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            per_loss = np.where(n_pix > 0, loss_sums / np.maximum(n_pix, 1), np.nan)
        per_dice = np.asarray(dice(c.tp, c.fp, c.fn, ev), dtype=np.float64)
        per_iou = np.asarray(iou(c.tp, c.fp, c.fn, ev), dtype=np.float64)
        per_l2 = np.asarray(pixel_error_l2(c.fp, c.fn), dtype=np.float64)
        defined = per_dice[~np.isnan(per_dice)]
        return SegmentationMetrics(
            accuracy=_first(pixel_accuracy(t.tp, t.fp, t.fn, t.tn)),
            loss=float(loss),
            dice=_first(dice(t.tp, t.fp, t.fn, ev)),
            iou=_first(iou(t.tp, t.fp, t.fn, ev)),
            mean_iou=_first(mean_iou(t.tp, t.fp, t.fn, t.tn, ev)),
            precision=_first(precision(t.tp, t.fp, ev)),
            recall=_first(recall(t.tp, t.fn, ev)),
            pixel_error_l2=float(per_l2.mean()),
            pixel_error_rms=_first(pixel_error_rms(t.fp, t.fn, t.tn, t.tp)),
            dice_per_image_mean=float(defined.mean()) if defined.size else math.nan,
            n_images=len(c),
            tp=int(t.tp[0]),
            fp=int(t.fp[0]),
            fn=int(t.fn[0]),
            tn=int(t.tn[0]),
            threshold=float(self._threshold if self._threshold is not None else math.nan),
            empty_value=ev,
            per_image={
                "dice": per_dice.tolist(),
                "iou": per_iou.tolist(),
                "pixel_error_l2": per_l2.tolist(),
                "loss": per_loss.tolist(),
            },
        )
