"""The task contract: what one kind of model needs from the audit loop.

A task says what the attack losses take as targets, how an engine's logits are evaluated
(one :class:`~segshield.metrics.Accumulator` with the task's activation), which metric attack
success is measured on, and which metrics get bootstrap intervals. The audit loop
(:mod:`segshield.audits.run`) is the same for every task; a new task is a new class here.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from segshield.enums import Activation, TaskKind
from segshield.metrics import Accumulator, ConfusionCounts, SegmentationMetrics, Statistic
from segshield.results import Metrics, PerImage, from_fields

__all__ = ["Task", "metrics_record", "per_image_record"]


class Task(Protocol):
    """One kind of model: binary / multi-class / multi-label segmentation, classification."""

    kind: TaskKind
    activation: Activation
    num_classes: int
    primary: str  # the metric attack success is the relative drop of: "dice" | "accuracy"
    ci_metrics: tuple[str, ...]  # metrics that get bootstrap intervals
    has_panels: bool  # image panels (masks) make sense

    def check_output(self, out: object, x: torch.Tensor) -> None:
        """Raise ModelOutputError unless ``out`` is the logits this task expects for ``x``."""
        ...

    def loss_targets(self, labels: np.ndarray) -> torch.Tensor:
        """What attack losses take as targets, from dataset labels of a batch."""
        ...

    def accumulator(self) -> Accumulator:
        """A fresh accumulator (predictions kept) for one engine on one input set."""
        ...

    def statistics(self) -> dict[str, Statistic]:
        """Count statistics by metric name ((R, C) summed counts -> (R,)), for intervals."""
        ...

    def image_scores(self, per_image: PerImage) -> np.ndarray:
        """Per-image primary score (N,) in [0, 1]: what "fooled" is judged on."""
        ...

    def image_predictions(self, preds: np.ndarray) -> list[int] | None:
        """Predictions worth storing per image in the report (a classifier's class), or None."""
        ...


def metrics_record(m: SegmentationMetrics) -> Metrics:
    """The report's Metrics from the accumulator's result (no per-image lists): with
    ``n_empty_truth`` and ``dice_per_image_mean`` over the non-empty-truth images only (None
    when there is none), and hd95/asd/``n_surface_undefined``/``surface_unit`` when surface
    distances were measured, see :class:`~segshield.metrics.SegmentationMetrics`."""
    raw = m.to_dict()
    raw["per_class"] = [
        {k: v for k, v in c.items() if k != "dice_per_image"} for c in raw["per_class"]
    ]
    return Metrics.from_dict(raw)


def per_image_record(m: SegmentationMetrics, counts: ConfusionCounts) -> PerImage:
    """The report's per-image values: the accumulator's lists (hd95/asd among them when
    measured) + foreground-summed counts."""
    raw = m.to_dict()["per_image"]
    fg = counts.foreground_sum(m.foreground)
    for key in ("tp", "fp", "fn", "tn"):
        raw[key] = getattr(fg, key)[:, 0].tolist()
    return from_fields(PerImage, raw)
