"""What an audit reads before it attacks: the images and labels, the model, INT8
calibration images, and a check that the model's output fits the task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from segshield.data import (
    ClassificationDataset,
    SegDataset,
    bundled_dataset,
    bundled_volumes_dataset,
    check_model_input,
    dataset_from_path,
    detect_channels,
    intensity_from_options,
    patch_classification_from_segmentation,
)
from segshield.data.labels import LabelGroups, label_map_classes, multi_hot, parse_label_groups
from segshield.engines import ENGINE_SPECS
from segshield.enums import TaskKind
from segshield.errors import ModelOutputError, SegShieldError
from segshield.models import LoadedModel, load_model
from segshield.tasks import Task, make_task

from .config import AuditConfig

# --dataset volumes: the bundled lesion volumes (NIfTI), split by patient
BUNDLED_VOLUMES = "volumes"


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


def model_input_layout(model: torch.nn.Module) -> tuple[int, int] | None:
    """(input channels, spatial dims) of the model's first convolution; None without one
    (the data then decide, and the first forward pass checks the fit)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return int(module.in_channels), len(module.kernel_size)
    return None


def label_groups(config: AuditConfig) -> LabelGroups:
    """``config.label_groups`` ("name=1,2,3") as (name, label values) pairs."""
    return parse_label_groups(config.label_groups)


def _segmentation_data(config: AuditConfig, channels: int) -> SegDataset:
    size = (config.size, config.size)
    groups = label_groups(config)
    # label groups are read from a label map holding every value they name
    classes = label_map_classes(groups) if groups else config.num_classes
    options = {
        "intensity": intensity_from_options(config.intensity, config.window, config.percentiles),
        "volume_mode": config.volume_mode,
        "slice_axis": config.slice_axis,
        "skip_empty": not config.keep_empty_slices,
        "volume_size": tuple(config.volume_size),
    }
    if config.data is not None:
        return dataset_from_path(config.data, size, channels, classes, **options)
    if config.dataset == BUNDLED_VOLUMES:
        return bundled_volumes_dataset(
            config.split, size, channels=channels, num_classes=classes, **options
        )
    if classes > 1:
        raise SegShieldError(
            "the bundled datasets are binary; a multi-class audit needs --data with "
            "images/ and masks/ label maps"
        )
    return bundled_dataset(config.dataset, config.split, size=size)


def _data_channels(config: AuditConfig) -> int:
    """--channels, else the files' own count (1 grey, 3 colour; a volume's modalities)."""
    if config.channels is not None:
        return config.channels
    if config.data is not None:
        return detect_channels(config.data)
    return 1


def load_audit_data(config: AuditConfig, model: torch.nn.Module | None = None) -> AuditData:
    """The audited images: segmentation tiles, slices or volumes, or labelled patches cut
    from tiles for a classifier (seed mammography's setting), the first ``config.limit``.

    With the model given, the data must fit its first convolution (2-D vs 3-D, channels):
    a DataError names both and the option that fixes it."""
    layout = None if model is None else model_input_layout(model)
    ds = _segmentation_data(config, _data_channels(config))
    if layout is not None and config.task_kind != TaskKind.CLASSIFICATION:
        check_model_input(ds, *layout)
    if config.task_kind == TaskKind.CLASSIFICATION:
        cls = patch_classification_from_segmentation(ds, patch=config.patch, stride=config.stride)
        return classification_audit_data(cls.subset(config.limit))
    data = segmentation_audit_data(ds.subset(config.limit))
    groups = label_groups(config)
    if groups:
        names = tuple(name for name, _ in groups)
        description = {**data.description, "label_groups": dict(groups)}
        labels = multi_hot(data.labels, groups)
        return replace(data, labels=labels, description=description, class_names=names)
    return data


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
    if kind == TaskKind.MULTILABEL:  # one channel per label, as the masks hold them
        k = int(data.labels.shape[1])
        return make_task(kind, k, config.threshold, class_names=data.class_names)
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
    # read as the audited data are (intensity, channels, slices or volumes, size)
    if config.calibration_data is not None:
        source = replace(config, data=config.calibration_data)
    elif config.data is None:
        source = replace(config, split="train")
    else:
        return None, ""
    ds = _segmentation_data(source, _data_channels(source))
    images = ds.images
    if config.task_kind == TaskKind.CLASSIFICATION:
        images = patch_classification_from_segmentation(
            ds, patch=config.patch, stride=config.stride
        ).images
    return images, ds.source
