"""`segshield train`: fit the seed U-Net, or any factory's model (binary, multi-class or
multi-label), on real data, as seeds unet-busi and fgsm-unet-family-mri-losses do: Adam,
flip/rotation/zoom augmentation, the seed's losses (BCE, Dice, Focal, Dice + Focal) with an
optional foreground weight, a validation split scored after every epoch, early stopping on
its Dice with the best weights restored, and a refusal of a model that predicts one class
everywhere. Seeded: the same config gives the same weights on the same machine.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

import segshield
from segshield.devices import resolve_device
from segshield.enums import TaskKind
from segshield.errors import SegShieldError
from segshield.hashing import sha256_file
from segshield.models import ModelCard, UNet, UNetConfig, build_from_factory
from segshield.results import clean_json
from segshield.training.evaluation import (
    DegenerateModelError,
    degenerate_reason,
    measure,
    metrics_dict,
    segmentation_task,
    validation_split,
)
from segshield.training.fit import BatchProgress, EpochSummary, FitSettings, augment, fit
from segshield.training.losses import parse_pos_weight, training_loss

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "augment", "evaluate", "train", "write_weights_and_card"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the model card).

    model: a factory ``package.module:fn`` or ``path/to/file.py:fn`` called with
    ``model_kwargs`` (None: the seed U-Net of ``base_width``/``depth``). num_classes: 1 for
    binary masks, K > 1 for label maps 0..K-1 (softmax); multi-label masks (one channel per
    label) set the channel count themselves. pos_weight: weight of foreground pixels in BCE
    and Focal, a number or "auto" (negatives / positives of the training masks, capped).
    val_fraction: share of the training volumes (images without volume ids) held out for
    validation; patience: epochs without a better validation Dice before stopping (0: never).
    """

    name: str = "unet"
    epochs: int = 60
    batch_size: int = 4
    lr: float = 1e-3
    seed: int = 0
    base_width: int = 16
    depth: int = 3
    zoom: float = 0.25  # random zoom-in up to this fraction
    augment_copies: int = 4  # augmented views of each training image per epoch
    device: str = "cpu"  # cpu, cuda, cuda:N or auto; the card records the one resolved
    loss: str = "bce"  # bce | dice | focal | dice_focal
    pos_weight: float | str = 1.0
    focal_gamma: float = 2.0
    val_fraction: float = 0.2
    patience: int = 10
    allow_degenerate: bool = False
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 1
    threshold: float = 0.5


@dataclass(frozen=True)
class TrainResult:
    """test_metrics: the report's Metrics schema as a dict, on the test data (the validation
    split when no test data was given; see the card's ``data.test``). degenerate: why the
    model is degenerate (see :func:`~segshield.training.evaluation.degenerate_reason`)."""

    weights: Path
    card: Path
    test_metrics: dict
    seconds: float
    val_metrics: dict | None = None
    degenerate: str | None = None
    history: list[EpochSummary] = field(default_factory=list)


def evaluate(model: torch.nn.Module, data: Any, batch_size: int = 8) -> dict:
    """Clean metrics of a binary ``model`` on a SegDataset, in the report's ``Metrics``
    schema (pooled over confusion counts; undefined ratios None)."""
    task = segmentation_task(1, data.masks.shape[1])
    return metrics_dict(measure(model, data.images, data.masks, task, batch_size))


def _build_model(config: TrainConfig, in_channels: int, out_channels: int):
    """(model, card architecture). A factory's card records how to rebuild it."""
    if config.model is None:
        arch = UNetConfig(in_channels, out_channels, config.base_width, config.depth)
        return UNet(arch), arch.to_dict()
    module = build_from_factory(config.model, **config.model_kwargs)
    arch = {"architecture": "factory", "factory": config.model}
    return module, {**arch, "factory_kwargs": dict(config.model_kwargs)}


def _check_output(model: torch.nn.Module, x: torch.Tensor, out_channels: int, what: str) -> None:
    """The model must map (1, C, H, W) to logits (1, out_channels, H, W)."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # the user's model: any failure is an input error
        raise SegShieldError(f"{what} failed on an input of shape {tuple(x.shape)}: {exc}") from exc
    want = (x.shape[0], out_channels, *x.shape[2:])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SegShieldError(
            f"{what} maps {tuple(x.shape)} to {got}; training needs logits {want} "
            "(1 channel for binary masks, --num-classes K for label maps, one per label for "
            "multi-label masks)"
        )


def _labels_of(data: Any, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, int, Any]:
    """(images, masks, output channels, task) of a dataset, checked."""
    images, masks = np.asarray(data.images, dtype=np.float32), np.asarray(data.masks)
    if images.ndim not in (4, 5) or masks.ndim != images.ndim or len(masks) != len(images):
        raise SegShieldError(
            f"training takes images (N, C, H, W) with masks (N, K, H, W), or volumes "
            f"(N, C, D, H, W) with masks (N, K, D, H, W); got images {images.shape} and masks "
            f"{masks.shape}"
        )
    if masks.shape[1] > 1 and config.num_classes > 1:
        raise SegShieldError("multi-label masks (one channel per label) take no --num-classes")
    task = segmentation_task(config.num_classes, masks.shape[1], config.threshold)
    if task.kind == TaskKind.MULTICLASS and int(masks.max()) >= config.num_classes:
        raise SegShieldError(
            f"the masks hold label {int(masks.max())}: --num-classes {config.num_classes} "
            f"allows 0..{config.num_classes - 1}"
        )
    if task.kind != TaskKind.MULTICLASS and int(masks.max()) > 1:
        raise SegShieldError(
            f"the masks hold label {int(masks.max())}: pass --num-classes for label maps"
        )
    return images, masks, task.num_classes, task


def _describe(images: np.ndarray, masks: np.ndarray, dataset: Any) -> dict:
    """A card's entry for (part of) a dataset: where it came from, its size, foreground
    share, the whole dataset's SHA-256 and licence when it has them."""
    out: dict[str, Any] = {
        "source": str(getattr(dataset, "source", "memory")),
        "n_images": len(images),
        "image_shape": list(images.shape[1:]),
        "foreground_fraction": float((masks > 0).mean()) if len(masks) else None,
    }
    if callable(getattr(dataset, "sha256", None)):
        out["dataset_sha256"] = dataset.sha256()
    licence = (getattr(dataset, "meta", None) or {}).get("licence")
    if licence is not None:
        out["licence"] = licence
    return out


@dataclass
class _Measured:
    """The fitted model's scores: validation (None without a split) and test, the test
    data's card entry, and why the model is degenerate (None if it is not)."""

    val: Any
    test: Any
    test_desc: dict
    degenerate: str | None


def _measure(
    model: torch.nn.Module, config: TrainConfig, task: Any, val: tuple, test_data: Any,
    train: tuple,
) -> _Measured:  # fmt: skip
    val_m = measure(model, val[0], val[1], task) if len(val[0]) else None
    if test_data is not None:
        t_images, t_masks, *_ = _labels_of(test_data, config)
        test_m = measure(model, t_images, t_masks, task)
        test_desc = _describe(t_images, t_masks, test_data)
        where = "the test data"
    elif val_m is not None:
        test_m, where = val_m, None  # checked as the validation split
        test_desc = {"same_as": "validation (it chose the epoch: optimistic)"}
    else:
        test_m, where = measure(model, train[0], train[1], task), "the training data"
        test_desc = {"same_as": "training data (no held-out data: optimistic)"}
    reasons = []
    if val_m is not None:
        reasons.append(degenerate_reason(val_m, "the validation split"))
    if where is not None:
        reasons.append(degenerate_reason(test_m, where))
    return _Measured(val_m, test_m, test_desc, "; ".join(r for r in reasons if r) or None)


def train(
    config: TrainConfig,
    train_data: Any,
    test_data: Any | None,
    out_dir: Path,
    command: str = "",
    on_epoch: Callable[[EpochSummary], None] | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> TrainResult:
    """Fit on ``train_data`` less its validation split, on ``config.device``; write
    ``<out_dir>/<name>.safetensors`` (CPU tensors) and ``<name>.json`` (model card).

    train_data/test_data: a SegDataset, or any object with ``images`` (N, C, H, W) float32
    in [0, 1], ``masks`` (N, K, H, W) uint8, ``names``, ``source`` and ``meta`` (multi-label
    masks, which the file loaders do not read yet). ``meta["volume"]``: a volume id per image
    for the validation split. test_data None: the card's test metrics are the validation
    split's (which chose the epoch, so they are optimistic).

    Raises:
        DegenerateModelError: after writing, the model predicts one class everywhere
            (unless ``config.allow_degenerate``); the error carries the TrainResult.
        SegShieldError: bad masks, options or model output, or a missing device.
    """
    device = resolve_device(config.device)
    t0 = time.perf_counter()
    images, masks, out_channels, task = _labels_of(train_data, config)
    volumes = (getattr(train_data, "meta", None) or {}).get("volume")
    tr, va, split_by = validation_split(len(images), volumes, config.val_fraction, config.seed)
    multiclass = task.kind == TaskKind.MULTICLASS
    pos = parse_pos_weight(config.pos_weight, masks[tr], multiclass)
    loss_fn = training_loss(config.loss, pos.value, config.focal_gamma, multiclass)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model, arch = _build_model(config, images.shape[1], out_channels)
    what = f"--model {config.model}" if config.model else "the U-Net"
    _check_output(model, torch.from_numpy(images[:1]), out_channels, what)
    model = model.to(device)
    settings = FitSettings(
        config.epochs, config.batch_size, config.lr, config.zoom, config.augment_copies,
        config.patience,
    )  # fmt: skip
    train_part, val_part = (images[tr], masks[tr]), (images[va], masks[va])
    val = val_part if len(va) else None
    fitted = fit(model, task, loss_fn, train_part, val, settings, gen, on_batch, on_epoch)
    m = _measure(model, config, task, val_part, test_data, train_part)
    seconds = time.perf_counter() - t0
    val_metrics = None if m.val is None else metrics_dict(m.val)
    record = {
        "device": str(device),
        "task": task.kind.value,
        "pos_weight": pos.to_dict(),
        "validation": {
            "split_by": split_by,
            "names": [str(train_data.names[i]) for i in va],
            "metrics": val_metrics,
            **fitted.to_dict(),
        },
        "degenerate": m.degenerate,
        "seconds": round(seconds, 1),
    }
    augmentation = ["hflip", "vflip", "rot90", f"zoom<= {1 + config.zoom:.2f}x"]
    training = {**asdict(config), "optimizer": "Adam", "augmentation": augmentation, **record}
    data = {
        "train": _describe(*train_part, train_data),
        "validation": _describe(*val_part, train_data),
        "test": m.test_desc,
    }
    test_metrics = metrics_dict(m.test)
    weights, card = write_weights_and_card(
        model, out_dir, config.name, arch, data, clean_json(training), test_metrics, command
    )
    log.info("wrote %s and %s: %s", weights, card, json.dumps(test_metrics))
    result = TrainResult(
        weights, card, test_metrics, seconds, val_metrics, m.degenerate, fitted.history
    )
    if m.degenerate and not config.allow_degenerate:
        raise DegenerateModelError(f"the trained model is degenerate: {m.degenerate}", result)
    if m.degenerate:
        log.warning("the trained model is degenerate (allowed): %s", m.degenerate)
    return result


def write_weights_and_card(
    model: torch.nn.Module,
    out_dir: Path,
    name: str,
    architecture: dict,
    data: dict,
    training: dict,
    test_metrics: dict,
    command: str,
) -> tuple[Path, Path]:
    """``out_dir/name.safetensors`` (CPU tensors) and its model card ``out_dir/name.json``
    with the weights' SHA-256, the versions and the time; for train and harden alike."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt", "segshield": segshield.__version__})
    card = ModelCard(
        name=name,
        architecture=architecture,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        data=data,
        training=training,
        test_metrics=test_metrics,
        versions={
            "segshield": segshield.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        command=command,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    card_path = out_dir / f"{name}.json"
    card.write(card_path)
    return weights, card_path
