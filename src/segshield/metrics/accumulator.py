"""One accumulator for every task: per-image, per-class counts and losses over batches.

Dataset-level scores come from counts summed over all images (not from averaging batch
scores), so results do not depend on the batch size or on how the data was batched. The
activation is explicit (as MONAI's ``DiceHelper`` makes it): ``SIGMOID`` for binary (C = 1)
and multi-label heads, ``SOFTMAX`` for multi-class segmentation and classification.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segshield.enums import Activation
from segshield.errors import ModelOutputError
from segshield.metrics.aggregate import (
    accuracy_of,
    class_scores,
    decisions,
    foreground_mean,
    keras_mean_iou_of,
    nanmean,
    wrong_pixels,
)
from segshield.metrics.confusion import (
    ConfusionCounts,
    binarize_logits,
    check_binary_mask,
    check_label_map,
    labels_confusion,
    multilabel_confusion_counts,
)
from segshield.metrics.losses import bce_logits_per_pixel
from segshield.metrics.scores import ClassMetrics, SegmentationMetrics
from segshield.metrics.surface import SurfaceSummary, SurfaceTracker, check_spacing

__all__ = [
    "PER_IMAGE_KEYS",
    "SURFACE_KEYS",
    "Accumulator",
    "ClassMetrics",
    "MultiClassAccumulator",
    "SegmentationAccumulator",
    "SegmentationMetrics",
]

PER_IMAGE_KEYS: tuple[str, ...] = ("dice", "iou", "pixel_error_l2", "loss")
SURFACE_KEYS: tuple[str, ...] = ("hd95", "asd")  # per-image keys added by surface=True


class Accumulator:
    """Collects per-image, per-class confusion counts, losses and (optionally) predictions.

    Args:
        activation: SIGMOID (independent channels thresholded; binary (N,C,H,W) target) or
            SOFTMAX (arg-max over channels, ties to the lowest index; integer label-map target
            (N,H,W) or (N,1,H,W)).
        num_classes: C, the number of logit channels (>= 2 for softmax, >= 1 for sigmoid).
        background: class left out of the foreground means (it still counts in accuracy and
            loss). "auto": 0 for softmax, None (every channel) for sigmoid.
        threshold: sigmoid only: channel on where sigmoid(logit) > threshold, in (0, 1).
        empty_value: a ratio whose denominator is 0 (class absent from prediction and target);
            1.0 = perfect by convention, or NaN to leave it undefined (skipped by the means).
            It applies to the pooled per-class scores and to ``ClassMetrics.dice_per_image``;
            the image-level ``per_image["dice"]``/``["iou"]`` of an image whose ground truth
            has no foreground at all are NaN whatever it is (see ``SegmentationMetrics``).
        keep_predictions: keep predictions for :meth:`predictions` (engine comparisons).
        class_names: optional C names.
        surface: also measure HD95 and ASD per image and foreground class (segmentation with
            spatial axes; see :mod:`segshield.metrics.surface` and ``SegmentationMetrics``).
        spacing: pixel/voxel size per spatial axis for the surface distances (taken as mm);
            None = 1.0, distances in pixels.
    Logits may be (N, C, *spatial) with any number of spatial axes (2D, 3D, or none for a
    classifier's (N, K)).
    """

    def __init__(
        self,
        activation: Activation | str = Activation.SIGMOID,
        num_classes: int = 1,
        background: int | str | None = "auto",
        threshold: float = 0.5,
        empty_value: float = 1.0,
        keep_predictions: bool = False,
        class_names: Sequence[str] | None = None,
        surface: bool = False,
        spacing: Sequence[float] | None = None,
    ) -> None:
        self.activation = Activation(activation)
        softmax = self.activation == Activation.SOFTMAX
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise ValueError(f"num_classes must be an int, got {num_classes!r}")
        if num_classes < (2 if softmax else 1):
            raise ValueError(
                f"num_classes must be at least {2 if softmax else 1} for {self.activation}, "
                f"got {num_classes}"
            )
        self.num_classes = c = int(num_classes)
        self.background = _background(background, softmax, c)
        self.foreground = tuple(i for i in range(c) if i != self.background)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
        self.threshold = float(threshold)
        self.empty_value = float(empty_value)
        self.keep_predictions = keep_predictions
        self.class_names = None if class_names is None else tuple(class_names)
        if self.class_names is not None and (
            len(self.class_names) != c or not all(isinstance(n, str) for n in self.class_names)
        ):
            raise ValueError(f"class_names must be {c} strings, got {list(self.class_names)!r}")
        self.surface = bool(surface)
        self.spacing = None if spacing is None else check_spacing(spacing, len(spacing))
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._counts: list[ConfusionCounts] = []
        self._loss_sums: list[np.ndarray] = []
        self._loss_elems: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []
        self._surface = SurfaceTracker(self.foreground, self.spacing) if self.surface else None

    @property
    def n_images(self) -> int:
        """Number of images accumulated so far."""
        return sum(len(c) for c in self._counts)

    def __len__(self) -> int:
        return self.n_images

    def update(
        self,
        logits: np.ndarray,
        target: np.ndarray,
        threshold: float | None = None,
        spacing: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Add one batch.

        Args:
            logits: float (N, C, *spatial) raw outputs (before sigmoid/softmax); finite.
            target: sigmoid, binary masks of the logits' shape; softmax, integer labels
                (N, *spatial) or (N, 1, *spatial) in [0, C).
            threshold: sigmoid threshold for this batch; must equal the accumulator's
                (set here before the first batch, when given).
            spacing: surface distances only: this batch's spacing in mm, one per spatial axis
                or one row per image (N, D) (volumes of a dataset differ); default the
                accumulator's. Give it for every batch or for none.

        Raises:
            ModelOutputError: logits contain NaN or Inf (the message gives how many).
            ValueError: shapes do not fit (both named), non-float logits, bad labels, or a
                changed threshold.
        """
        logits, target = np.asarray(logits), np.asarray(target)
        self._set_threshold(threshold)
        self._check(logits, target)
        n = logits.shape[0]
        # checked before anything is added, so that a misfit leaves the accumulator as it was
        spacings = (
            None if self._surface is None else self._surface.spacings(spacing, n, logits.ndim)
        )
        if self.activation == Activation.SOFTMAX:
            labels = check_label_map("target", target, self.num_classes).reshape(
                n, *logits.shape[2:]
            )
            pred = np.argmax(logits, axis=1)
            counts = labels_confusion(pred, labels, self.num_classes)
            x = logits.astype(np.float64)
            # Cross-entropy per pixel: logsumexp over classes minus the true class's logit.
            m = x.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
            per_pixel = lse - np.take_along_axis(x, labels[:, None], axis=1)[:, 0]
            kept = pred[:, None].astype(np.min_scalar_type(self.num_classes - 1))
            if self._surface is not None:
                classes = np.arange(self.num_classes).reshape(1, -1, *([1] * pred.ndim)[1:])
                self._surface.add(pred[:, None] == classes, labels[:, None] == classes, spacings)
        else:
            mask = check_binary_mask("target", target)
            pred = binarize_logits(logits, self.threshold)
            counts = multilabel_confusion_counts(pred, mask)
            per_pixel = bce_logits_per_pixel(logits, mask.astype(np.float64))
            kept = pred
            if self._surface is not None:
                self._surface.add(pred, mask.astype(bool), spacings)
        self._counts.append(counts)
        # Per-image sums (not means) so the global mean is exact whatever the image sizes.
        flat = per_pixel.reshape(n, -1)
        self._loss_sums.append(flat.sum(axis=1))
        self._loss_elems.append(np.full(n, flat.shape[1], dtype=np.int64))
        if self.keep_predictions:
            self._preds.append(kept.copy())

    def _settings(self) -> tuple:
        return (
            self.activation, self.num_classes, self.background, self.threshold,
            self.empty_value, self.keep_predictions, self.class_names, self.surface,
            self.spacing,
        )  # fmt: skip

    def merge(self, other: Accumulator) -> None:
        """Append ``other``'s images after this one's, as if its batches had been updated
        here (the shards of a sharded audit, merged in dataset order).

        Raises:
            ValueError: the two were made with different settings (both named), or measured
                surface distances in different units.
        """
        if other._settings() != self._settings():
            raise ValueError(
                f"cannot merge accumulators with different settings: {self._settings()} vs "
                f"{other._settings()}"
            )
        if self._surface is not None and other._surface is not None:
            self._surface.check_merge(other._surface)
        self._counts += other._counts
        self._loss_sums += other._loss_sums
        self._loss_elems += other._loss_elems
        self._preds += other._preds
        if self._surface is not None and other._surface is not None:
            self._surface.merge(other._surface)

    def _set_threshold(self, threshold: float | None) -> None:
        if threshold is None or threshold == self.threshold:
            return
        if self._counts:  # mixing thresholds would make the summed counts meaningless
            raise ValueError(
                f"threshold changed from {self.threshold} to {threshold}; call reset() first"
            )
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
        self.threshold = float(threshold)

    def _check(self, logits: np.ndarray, target: np.ndarray) -> None:
        c = self.num_classes
        if logits.ndim < 2 or logits.shape[1] != c:
            raise ValueError(
                f"logits must be (N,{c},...) for num_classes={c}, got logits {logits.shape} "
                f"(target {target.shape})"
            )
        n, spatial = logits.shape[0], logits.shape[2:]
        if self.activation == Activation.SOFTMAX:
            if target.shape not in ((n, *spatial), (n, 1, *spatial)):
                raise ValueError(
                    f"softmax target must be label maps {(n, *spatial)} or {(n, 1, *spatial)} "
                    f"matching logits {logits.shape}, got target {target.shape}"
                )
        elif target.shape != logits.shape:
            raise ValueError(
                f"logits and target must have the same shape (N,C,H,W): logits "
                f"{logits.shape} vs target {target.shape}"
            )
        if not np.issubdtype(logits.dtype, np.floating):
            raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
        finite = np.isfinite(logits)
        if not finite.all():
            n_bad = logits.size - int(np.count_nonzero(finite))
            n_nan = int(np.count_nonzero(np.isnan(logits)))
            raise ModelOutputError(
                f"model output of shape {logits.shape} has {n_bad} non-finite values of "
                f"{logits.size} ({n_nan} NaN, {n_bad - n_nan} Inf)"
            )

    def counts(self) -> ConfusionCounts:
        """Per-image, per-class confusion counts of everything accumulated, (N, C)."""
        return ConfusionCounts.concat(self._counts, self.num_classes)

    def predictions(self) -> np.ndarray:
        """Predictions in update order: sigmoid, bool masks (N, C, ...); softmax, label maps
        (N, 1, ...) in the smallest unsigned dtype holding C - 1.

        Raises:
            RuntimeError: made without ``keep_predictions=True``.
            ValueError: updates had different image sizes (shapes named).
        """
        if not self.keep_predictions:
            raise RuntimeError("predictions were not kept: use keep_predictions=True")
        if not self._preds:  # the layout and dtype a non-empty result would have
            if self.activation == Activation.SOFTMAX:
                return np.zeros((0, 1, 0, 0), dtype=np.min_scalar_type(self.num_classes - 1))
            return np.zeros((0, self.num_classes, 0, 0), dtype=bool)
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
        c, ev, fg, act = self.counts(), self.empty_value, self.foreground, self.activation
        t = c.total()
        cls = {k: v[0] for k, v in class_scores(t, ev).items()}
        img = class_scores(c, ev)  # (N, C) each
        wrong = wrong_pixels(c, act)
        loss_sums, loss_elems = np.concatenate(self._loss_sums), np.concatenate(self._loss_elems)
        n_elems = int(loss_elems.sum())
        # fsum: exact, so the total loss does not depend on how images were batched.
        loss = math.fsum(loss_sums.tolist()) / n_elems if n_elems else math.nan
        per_loss = np.where(loss_elems > 0, loss_sums / np.maximum(loss_elems, 1), np.nan)
        # An image whose ground truth has no foreground (no foreground class in the label map,
        # no positive in any channel) has no overlap to score: its per-image Dice and IoU are
        # undefined (NaN), whatever empty_value says, so a convention value (1 for an empty
        # prediction, 0 for one false-positive blob) never enters a per-image mean or a
        # per-image attack success. Its pixels still count in every pooled score.
        empty_truth = (c.tp + c.fn)[:, list(fg)].sum(axis=1) == 0
        img_dice = np.where(empty_truth, np.nan, foreground_mean(img["dice"], fg))
        img_iou = np.where(empty_truth, np.nan, foreground_mean(img["iou"], fg))
        total_decisions = float(decisions(t, act)[0])
        fg_t = t.foreground_sum(fg)
        binary = act == Activation.SIGMOID and self.num_classes == 1
        per_image = {
            "dice": img_dice.tolist(),
            "iou": img_iou.tolist(),
            "pixel_error_l2": np.sqrt(wrong).tolist(),
            "loss": per_loss.tolist(),
        }
        surface = None if self._surface is None else self._surface.summary((c.tp + c.fn) > 0)
        if surface is not None:
            per_image.update(surface.per_image())
        return SegmentationMetrics(
            activation=act,
            num_classes=self.num_classes,
            background=self.background,
            foreground=fg,
            class_names=self.class_names,
            accuracy=float(accuracy_of(t, act)[0]),
            loss=float(loss),
            dice=float(foreground_mean(cls["dice"][None], fg)[0]),
            iou=float(foreground_mean(cls["iou"][None], fg)[0]),
            mean_iou=float(
                keras_mean_iou_of(t, ev)[0] if binary else foreground_mean(cls["iou"][None], fg)[0]
            ),
            precision=float(foreground_mean(cls["precision"][None], fg)[0]),
            recall=float(foreground_mean(cls["recall"][None], fg)[0]),
            pixel_error_l2=float(np.sqrt(wrong).mean()),
            pixel_error_rms=(
                math.sqrt(wrong.sum() / total_decisions) if total_decisions else math.nan
            ),
            dice_per_image_mean=float(nanmean(img_dice)),
            n_images=len(c),
            n_empty_truth=int(np.count_nonzero(empty_truth)),
            tp=int(fg_t.tp[0, 0]),
            fp=int(fg_t.fp[0, 0]),
            fn=int(fg_t.fn[0, 0]),
            tn=int(fg_t.tn[0, 0]),
            threshold=self.threshold if act == Activation.SIGMOID else None,
            empty_value=ev,
            per_class=self._per_class(t, cls, img["dice"], surface),
            per_image=per_image,
            **({} if surface is None else surface.fields()),
        )

    def _per_class(
        self,
        t: ConfusionCounts,
        cls: dict[str, np.ndarray],
        img_dice: np.ndarray,
        surface: SurfaceSummary | None,
    ) -> tuple[ClassMetrics, ...]:
        def dist(k: int, which: str) -> float | None:
            return None if surface is None else float(getattr(surface, which)[k])

        return tuple(
            ClassMetrics(
                index=k,
                name=None if self.class_names is None else self.class_names[k],
                foreground=k in self.foreground,
                dice=float(cls["dice"][k]),
                iou=float(cls["iou"][k]),
                precision=float(cls["precision"][k]),
                recall=float(cls["recall"][k]),
                tp=int(t.tp[0, k]),
                fp=int(t.fp[0, k]),
                fn=int(t.fn[0, k]),
                tn=int(t.tn[0, k]),
                dice_per_image=tuple(img_dice[:, k].tolist()),
                hd95=dist(k, "hd95_per_class"),
                asd=dist(k, "asd_per_class"),
            )
            for k in range(self.num_classes)
        )


def _background(background: int | str | None, softmax: bool, c: int) -> int | None:
    if isinstance(background, str):
        if background != "auto":
            raise ValueError(f"background must be an int, None or 'auto', got {background!r}")
        return 0 if softmax else None
    if background is None:
        return None
    if isinstance(background, bool) or not isinstance(background, (int, np.integer)):
        raise ValueError(f"background must be an int, None or 'auto', got {background!r}")
    if not 0 <= background < c:
        raise ValueError(f"background {background} out of range for {c} classes")
    if c == 1:
        raise ValueError("background would exclude the only class: use background=None")
    return int(background)


def SegmentationAccumulator(  # the binary accumulator's established name
    keep_predictions: bool = False, empty_value: float = 1.0, threshold: float = 0.5
) -> Accumulator:
    """The binary case: one sigmoid channel, binary (N, 1, H, W) masks."""
    return Accumulator(
        Activation.SIGMOID,
        1,
        threshold=threshold,
        empty_value=empty_value,
        keep_predictions=keep_predictions,
    )


def MultiClassAccumulator(  # the multi-class accumulator's established name
    num_classes: int, mode: Activation | str = Activation.SOFTMAX, **kwargs: Any
) -> Accumulator:
    """Multi-class (``mode="softmax"``) or multi-label (``mode="sigmoid"``) segmentation."""
    try:
        activation = Activation(mode)
    except ValueError:
        raise ValueError(f"mode must be 'softmax' or 'sigmoid', got {mode!r}") from None
    return Accumulator(activation, num_classes, **kwargs)
