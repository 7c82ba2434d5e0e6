"""Tasks: what the one audit loop needs to know about a kind of model (see base.Task)."""

from __future__ import annotations

from segshield.enums import TaskKind
from segshield.tasks.base import Task, metrics_record, per_image_record
from segshield.tasks.classification import ClassificationTask
from segshield.tasks.segmentation import SegmentationTask

__all__ = [
    "ClassificationTask",
    "SegmentationTask",
    "Task",
    "make_task",
    "metrics_record",
    "per_image_record",
]


def make_task(
    kind: TaskKind | str,
    num_classes: int = 1,
    threshold: float = 0.5,
    class_names: tuple[str, ...] | None = None,
    spacing: tuple[float, ...] | None = None,
) -> Task:
    """The task for ``kind`` ("binary", "multiclass", "multilabel", "classification").
    spacing: a segmentation dataset's pixel/voxel size in mm per spatial axis (None: pixels)."""
    kind = TaskKind(kind)
    if kind == TaskKind.CLASSIFICATION:
        return ClassificationTask(num_classes=num_classes, class_names=class_names)
    return SegmentationTask(kind, num_classes, threshold, class_names, spacing=spacing)
