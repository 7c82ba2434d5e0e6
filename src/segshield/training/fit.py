"""The training loop of `segshield train` for any segmentation model: Adam over augmented,
shuffled batches, a progress report after every batch, validation after every epoch, and
early stopping on the validation Dice with the best epoch's weights restored.

The library never prints: ``on_batch`` / ``on_epoch`` callbacks receive what happened and
the CLI draws it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from segshield.devices import module_device
from segshield.enums import TaskKind
from segshield.tasks import SegmentationTask
from segshield.training.evaluation import measure
from segshield.training.losses import BatchLoss

log = logging.getLogger(__name__)

__all__ = ["BatchProgress", "EpochSummary", "FitResult", "FitSettings", "augment", "fit"]


@dataclass(frozen=True)
class BatchProgress:
    """After batch ``batch`` of ``batches`` in epoch ``epoch`` of ``epochs`` (1-based);
    ``loss``: the mean training loss of this epoch's batches so far."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float


@dataclass(frozen=True)
class EpochSummary:
    """One finished epoch: mean training loss, the validation Dice/loss (None without a
    validation split), whether it is the best so far, and its seconds."""

    epoch: int
    epochs: int
    train_loss: float
    val_dice: float | None
    val_loss: float | None
    best: bool
    seconds: float


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    batch_size: int
    lr: float
    zoom: float
    augment_copies: int
    patience: int  # epochs without a better validation score before stopping; 0: never


@dataclass
class FitResult:
    """monitor: "val_dice", "val_loss" (the validation masks hold no foreground) or None."""

    history: list[EpochSummary] = field(default_factory=list)
    monitor: str | None = None
    best_epoch: int | None = None
    stopped_early: bool = False

    def to_dict(self) -> dict:
        best = self.history[self.best_epoch - 1] if self.best_epoch else None
        return {
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_val_dice": None if best is None else best.val_dice,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
            "history": [asdict(h) for h in self.history],
        }


def augment(
    images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, zoom: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, 90-degree rotations and zoom-in, the same for each image and its mask.

    images: (N, C, H, W) float; masks: (N, K, H, W) float: {0, 1} per channel, or label
    values (nearest-neighbour zoom keeps them). Volumes (N, C, D, H, W) are flipped and
    rotated in-plane, not zoomed. Shapes are kept.
    """
    out_i, out_m = [], []
    h, w = images.shape[-2:]
    for img, msk in zip(images, masks, strict=True):
        if torch.rand((), generator=gen) < 0.5:
            img, msk = img.flip(-1), msk.flip(-1)
        if torch.rand((), generator=gen) < 0.5:
            img, msk = img.flip(-2), msk.flip(-2)
        k = int(torch.randint(0, 4, (), generator=gen))
        img, msk = torch.rot90(img, k, (-2, -1)), torch.rot90(msk, k, (-2, -1))
        scale = 1.0 + float(torch.rand((), generator=gen)) * zoom
        if scale > 1.01 and img.ndim == 3:  # zoom-in on images; volumes get flips/rotations
            ch, cw = round(h / scale), round(w / scale)
            y0 = int(torch.randint(0, h - ch + 1, (), generator=gen))
            x0 = int(torch.randint(0, w - cw + 1, (), generator=gen))
            img = F.interpolate(
                img[None, :, y0 : y0 + ch, x0 : x0 + cw],
                size=(h, w),
                mode="bilinear",
                align_corners=False,
            )[0]
            msk = F.interpolate(msk[None, :, y0 : y0 + ch, x0 : x0 + cw], size=(h, w))[0]
        out_i.append(img)
        out_m.append(msk)
    return torch.stack(out_i), torch.stack(out_m)


def _score(dice: float | None, loss: float | None, monitor: str | None) -> float:
    value = dice if monitor == "val_dice" else (None if loss is None else -loss)
    return -math.inf if value is None or not math.isfinite(value) else value


def _train_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: BatchLoss,
    data: tuple[torch.Tensor, torch.Tensor, Callable],
    settings: FitSettings,
    epoch: int,
    gen: torch.Generator,
    on_batch: Callable[[BatchProgress], None] | None,
) -> float:
    """One pass over ``augment_copies`` augmented views of every training image; the mean
    loss. data: images (N, C, H, W), float masks, and ``to_target`` (float masks -> what
    the loss takes)."""
    images, masks, to_target = data
    device = module_device(model)
    n = len(images) * settings.augment_copies
    batches = math.ceil(n / settings.batch_size)
    idx = torch.randperm(n, generator=gen) % len(images)
    model.train()
    total = 0.0
    for k, s in enumerate(range(0, n, settings.batch_size)):
        b = idx[s : s + settings.batch_size]
        x, y = augment(images[b], masks[b], gen, settings.zoom)
        loss = loss_fn(model(x.to(device)), to_target(y).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(b)
        if on_batch is not None:
            on_batch(BatchProgress(epoch, settings.epochs, k + 1, batches, total / (s + len(b))))
    return total / n


def fit(
    model: torch.nn.Module,
    task: SegmentationTask,
    loss_fn: BatchLoss,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    settings: FitSettings,
    gen: torch.Generator,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[EpochSummary], None] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train`` (images, masks as the task holds them); after
    each epoch score ``val`` and keep the best weights, stop after ``patience`` epochs
    without improvement, and end with the best weights loaded.

    Augmentation draws from the CPU generator ``gen``: the same draws on every device.
    """
    images = torch.from_numpy(train[0])
    masks = torch.from_numpy(train[1].astype(np.float32))
    multiclass = task.kind == TaskKind.MULTICLASS

    def to_target(y: torch.Tensor) -> torch.Tensor:
        return y[:, 0].round().long() if multiclass else y

    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    result = FitResult()
    if val is not None and len(val[0]):
        has_fg = bool((val[1] > 0).any())
        result.monitor = "val_dice" if has_fg else "val_loss"
        if not has_fg:
            log.warning("the validation masks hold no foreground: early stopping on its loss")
    best_score, best_state, waited = -math.inf, None, 0
    for epoch in range(1, settings.epochs + 1):
        t0 = time.perf_counter()
        data = (images, masks, to_target)
        train_loss = _train_epoch(model, opt, loss_fn, data, settings, epoch, gen, on_batch)
        dice = val_loss = None
        if result.monitor is not None and val is not None:
            m = measure(model, val[0], val[1], task)
            dice = None if math.isnan(m.dice) else m.dice
            val_loss = m.loss
        score = _score(dice, val_loss, result.monitor)
        best = result.monitor is not None and (best_state is None or score > best_score)
        if best:
            best_score, waited, result.best_epoch = score, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
        summary = EpochSummary(
            epoch, settings.epochs, train_loss, dice, val_loss, best, time.perf_counter() - t0
        )
        result.history.append(summary)
        log.info("epoch %d/%d loss %.4f val dice %s", epoch, settings.epochs, train_loss, dice)
        if on_epoch is not None:
            on_epoch(summary)
        if settings.patience and result.monitor is not None and waited >= settings.patience:
            result.stopped_early = epoch < settings.epochs
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result
