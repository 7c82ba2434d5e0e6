"""What an audit reads before it attacks: the images and labels, the model, INT8
calibration images, and a check that the model's output fits the task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from segshield.data import (
    ClassificationDataset,
    SegDataset,
    bundled_dataset,
    dataset_from_path,
    patch_classification_from_segmentation,
)
from segshield.engines import ENGINE_SPECS
from segshield.enums import TaskKind
from segshield.errors import ModelOutputError, SegShieldError
from segshield.models import LoadedModel, load_model
from segshield.tasks import Task, make_task

from .config import AuditConfig


@dataclass(frozen=True)
class AuditData:
    """What the loop attacks: images (N, C, H, W) float32 in [0, 1]; labels as the task takes
    them (masks (N, 1, H, W) uint8, or class indices (N,) int64); names; a description."""

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    source: str
    sha256: str
    description: dict
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.images.shape[1:])

    @property
    def spacing(self) -> np.ndarray | None:
        """(N, spatial dims) pixel/voxel size in mm per image, from the description's
        ``spacing`` (one row for all images, or one per image); None: distances in pixels."""
        raw = self.description.get("spacing")
        if raw is None:
            return None
        sp = np.asarray(raw, dtype=np.float64)
        dims = self.images.ndim - 2
        if sp.ndim == 1:
            sp = np.broadcast_to(sp, (len(self), sp.shape[0]))
        if sp.shape != (len(self), dims) or not (np.isfinite(sp).all() and (sp > 0).all()):
            raise SegShieldError(
                f"dataset spacing of shape {sp.shape} does not fit {len(self)} images with "
                f"{dims} spatial axes (one positive size in mm per axis, per image or for all)"
            )
        return sp


def _segmentation_data(config: AuditConfig, size: tuple[int, int]) -> SegDataset:
    if config.data is not None:
        return dataset_from_path(config.data, size=size, num_classes=config.num_classes)
    if config.num_classes > 1:
        raise SegShieldError(
            "the bundled datasets are binary; a multi-class audit needs --data with "
            "images/ and masks/ label maps"
        )
    return bundled_dataset(config.dataset, config.split, size=size)


def load_audit_data(config: AuditConfig) -> AuditData:
    """The audited images: segmentation tiles, or labelled patches cut from them for a
    classifier (seed mammography's setting), the first ``config.limit`` of them."""
    ds = _segmentation_data(config, (config.size, config.size))
    if config.task_kind == TaskKind.CLASSIFICATION:
        cls = patch_classification_from_segmentation(ds, patch=config.patch, stride=config.stride)
        return classification_audit_data(cls.subset(config.limit))
    return segmentation_audit_data(ds.subset(config.limit))


def segmentation_audit_data(ds: SegDataset) -> AuditData:
    """The audit's view of a segmentation dataset."""
    return AuditData(ds.images, ds.masks, ds.names, ds.source, ds.sha256(), ds.describe())


def classification_audit_data(ds: ClassificationDataset) -> AuditData:
    """The audit's view of a classification dataset (labels (N,) int64, class names)."""
    desc = {**ds.describe(), "class_counts": ds.class_counts()}
    return AuditData(
        ds.images, ds.labels, ds.names, ds.source, ds.sha256(), desc, tuple(ds.classes)
    )


def load_audit_model(config: AuditConfig) -> LoadedModel:
    """The source model the config names. A classifier audit without weights or factory
    audits the bundled patch classifier."""
    if (
        config.task_kind == TaskKind.CLASSIFICATION
        and config.model.weights is None
        and (config.model.factory is None)
    ):
        from segshield.training import bundled_patch_classifier

        loaded = bundled_patch_classifier()
    else:
        loaded = load_model(config.model)
    return loaded


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode with frozen parameters while the audit runs (attacks need input
    gradients only); its mode and parameter flags are restored afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def audit_task(config: AuditConfig, data: AuditData) -> Task:
    """The task of this audit; a classifier's class count comes from its data."""
    kind = config.task_kind
    if kind == TaskKind.CLASSIFICATION:
        names = data.class_names or ()
        return make_task(kind, num_classes=len(names), class_names=names)
    return make_task(kind, config.num_classes, config.threshold)


def check_source(model: torch.nn.Module, data: AuditData, task: Task) -> None:
    """The source model must map one image to finite logits of the task's shape."""
    x = torch.from_numpy(data.images[:1])
    try:
        with torch.inference_mode():
            out = model(x)
    except Exception as exc:  # the user's model: any failure is an input error
        raise SegShieldError(
            f"the model failed on an input of shape {tuple(x.shape)}: {exc}"
        ) from exc
    task.check_output(out, x)
    if not torch.isfinite(out).all():
        raise ModelOutputError("the model returns NaN/Inf logits on a clean image")


def calibration_images(config: AuditConfig, engines: list[str]) -> tuple[np.ndarray | None, str]:
    """INT8 calibration images: --calibration-data, or the bundled training split; never the
    audited images themselves (that would calibrate on the test set)."""
    if not any(ENGINE_SPECS[e].precision == "int8" for e in engines):
        return None, ""
    size = (config.size, config.size)
    if config.calibration_data is not None:
        ds = dataset_from_path(config.calibration_data, size=size)
    elif config.data is None:
        ds = bundled_dataset(config.dataset, "train", size=size)
    else:
        return None, ""
    images = ds.images
    if config.task_kind == TaskKind.CLASSIFICATION:
        images = patch_classification_from_segmentation(
            ds, patch=config.patch, stride=config.stride
        ).images
    return images, ds.source
