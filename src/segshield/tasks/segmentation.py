"""Segmentation tasks: binary (one sigmoid channel), multi-class (softmax over label maps) and
multi-label (independent sigmoid channels over multi-channel masks)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from segshield.enums import Activation, TaskKind
from segshield.errors import DataError, ModelOutputError
from segshield.metrics import Accumulator, Statistic, mean_dice_of, mean_iou_of
from segshield.results import PerImage

__all__ = ["SegmentationTask"]

_ACTIVATION = {
    TaskKind.BINARY: Activation.SIGMOID,
    TaskKind.MULTICLASS: Activation.SOFTMAX,
    TaskKind.MULTILABEL: Activation.SIGMOID,
}


@dataclass(frozen=True)
class SegmentationTask:
    """Logits (N, C, *spatial) with the input's spatial size; C = 1 for binary.

    Labels as the dataset holds them: binary masks (N, 1, ...) in {0, 1}; multi-class label
    maps (N, 1, ...) in [0, C); multi-label masks (N, C, ...) in {0, 1}.

    surface_metrics: also measure HD95 and average surface distance per image (see
    :class:`~segshield.metrics.SegmentationMetrics`). spacing: pixel/voxel size in mm per
    spatial axis ((row, col) for 2D, (depth, row, col) for 3D), from the dataset
    description's ``spacing``; None = distances in pixels.
    """

    kind: TaskKind = TaskKind.BINARY
    num_classes: int = 1
    threshold: float = 0.5
    class_names: tuple[str, ...] | None = None
    primary: str = "dice"
    ci_metrics: tuple[str, ...] = ("dice", "iou")
    has_panels: bool = True
    spacing: tuple[float, ...] | None = None
    surface_metrics: bool = True

    def __post_init__(self) -> None:
        if self.kind not in _ACTIVATION:
            raise ValueError(f"{self.kind} is not a segmentation task")
        if self.kind == TaskKind.BINARY and self.num_classes != 1:
            raise ValueError(f"a binary task has 1 logit channel, got {self.num_classes}")
        if self.kind == TaskKind.MULTICLASS and self.num_classes < 2:
            raise ValueError(f"a multi-class task needs >= 2 classes, got {self.num_classes}")
        if self.spacing is not None:
            try:
                spacing = tuple(float(s) for s in self.spacing)
            except (TypeError, ValueError):
                spacing = ()
            if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
                raise DataError(
                    f"dataset spacing {self.spacing!r} must be positive numbers, one per "
                    f"spatial axis (mm): fix the dataset description's 'spacing'"
                )
            object.__setattr__(self, "spacing", spacing)  # frozen: normalised once here

    @property
    def activation(self) -> Activation:
        return _ACTIVATION[self.kind]

    def check_output(self, out: object, x: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor):
            raise ModelOutputError(f"the model returned {type(out).__name__}, expected a tensor")
        want = (x.shape[0], self.num_classes, *x.shape[2:])
        if out.ndim != x.ndim or out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
            raise ModelOutputError(
                f"the model maps {tuple(x.shape)} to {tuple(out.shape)}; expected logits {want}"
            )
        if out.shape[1] != self.num_classes:
            raise ModelOutputError(
                f"the model returns {out.shape[1]} logit channels but the audit expects "
                f"{self.num_classes} (--num-classes; 1 means binary with one sigmoid channel)"
            )
        if self.spacing is not None and len(self.spacing) != x.ndim - 2:
            raise DataError(
                f"dataset spacing {list(self.spacing)} has {len(self.spacing)} values but the "
                f"images {tuple(x.shape)} have {x.ndim - 2} spatial axes: give one per axis "
                f"in the dataset description's 'spacing'"
            )

    def loss_targets(self, labels: np.ndarray) -> torch.Tensor:
        """Binary/multi-label: float masks (N, C, ...); multi-class: int64 labels (N, ...)."""
        if self.kind == TaskKind.MULTICLASS:
            return torch.from_numpy(labels[:, 0].astype(np.int64))
        return torch.from_numpy(labels.astype(np.float32))

    @property
    def foreground(self) -> tuple[int, ...]:
        start = 1 if self.kind == TaskKind.MULTICLASS else 0  # class 0 is the background
        return tuple(range(start, self.num_classes))

    def accumulator(self) -> Accumulator:
        return Accumulator(
            self.activation,
            self.num_classes,
            threshold=self.threshold,
            keep_predictions=True,
            class_names=self.class_names,
            surface=self.surface_metrics,
            spacing=self.spacing,
        )

    def statistics(self) -> dict[str, Statistic]:
        fg = self.foreground
        return {
            "dice": lambda c: mean_dice_of(c, fg),
            "iou": lambda c: mean_iou_of(c, fg),
        }

    def image_scores(self, per_image: PerImage) -> np.ndarray:
        # NaN where undefined (an empty ground truth): the per-image comparisons (attack
        # success, fooled shares, success rate) leave such images out instead of scoring a
        # convention value.
        return np.asarray([np.nan if v is None else v for v in per_image.dice], dtype=np.float64)

    def image_predictions(self, preds: np.ndarray) -> list[int] | None:
        return None  # masks are too large for the report; panels show them
