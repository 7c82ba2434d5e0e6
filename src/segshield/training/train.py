"""Train the seed U-Net as seed unet-busi does: Adam, binary cross-entropy, flip/rotation/zoom
augmentation. Seeded: the same config gives the same weights on the same machine."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import segshield
from segshield.data import SegDataset
from segshield.devices import module_device, resolve_device
from segshield.errors import SegShieldError
from segshield.hashing import sha256_file
from segshield.metrics import SegmentationAccumulator
from segshield.models import ModelCard, UNet, UNetConfig
from segshield.tasks import metrics_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the model card)."""

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


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    card: Path
    test_metrics: dict
    seconds: float


def augment(
    images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, zoom: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, 90-degree rotations and zoom-in, the same for each image and its mask.

    images: (N, C, H, W) float; masks: (N, 1, H, W) float in {0, 1}. Shapes are kept.
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
        if scale > 1.01:
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


def evaluate(model: torch.nn.Module, data: SegDataset, batch_size: int = 8) -> dict:
    """Clean metrics of `model` on `data`, in the audit report's `Metrics` schema (aggregated
    over confusion counts)."""
    acc = SegmentationAccumulator()
    model.eval()
    device = module_device(model)
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            x = torch.from_numpy(data.images[i : i + batch_size]).to(device)
            acc.update(model(x).cpu().numpy(), data.masks[i : i + batch_size])
    return asdict(metrics_record(acc.result()))


def _fit(
    model: UNet,
    config: TrainConfig,
    train_data: SegDataset,
    gen: torch.Generator,
    on_epoch: Callable[[int, float], None] | None,
) -> None:
    """Adam on BCE over augmented, shuffled batches, in place, on the model's device:
    augmentation draws from the CPU generator ``gen`` (the same draws on every device), each
    batch is then moved; the loss is read back once per epoch."""
    device = module_device(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = torch.from_numpy(train_data.images)
    masks = torch.from_numpy(train_data.masks.astype(np.float32))
    n = len(train_data) * config.augment_copies
    for epoch in range(config.epochs):
        model.train()
        idx = torch.randperm(n, generator=gen) % len(train_data)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for s in range(0, n, config.batch_size):
            b = idx[s : s + config.batch_size]
            x, y = augment(images[b], masks[b], gen, config.zoom)
            x, y = x.to(device), y.to(device)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * len(b)
        mean_loss = float(total) / n
        log.info("epoch %d/%d bce %.4f", epoch + 1, config.epochs, mean_loss)
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss)


def train(
    config: TrainConfig,
    train_data: SegDataset,
    test_data: SegDataset,
    out_dir: Path,
    command: str = "",
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fit a U-Net on ``config.device``; write `<out_dir>/<name>.safetensors` (CPU tensors)
    and `<name>.json` (model card).

    Raises:
        SegShieldError: non-binary masks, or a device this machine does not have.
    """
    device = resolve_device(config.device)
    if train_data.masks.shape[1] != 1:
        raise SegShieldError("training supports binary masks (N, 1, H, W)")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    arch = UNetConfig(train_data.image_shape[0], 1, config.base_width, config.depth)
    model = UNet(arch).to(device)
    _fit(model, config, train_data, gen, on_epoch)
    metrics = evaluate(model, test_data)
    seconds = time.perf_counter() - t0
    training = {
        **asdict(config),
        "device": str(device),
        "optimizer": "Adam",
        "loss": "bce",
        "augmentation": ["hflip", "vflip", "rot90", f"zoom<= {1 + config.zoom:.2f}x"],
        "seconds": round(seconds, 1),
    }
    data = {
        "train": {k: v for k, v in train_data.describe().items() if k != "names"},
        "test": {k: v for k, v in test_data.describe().items() if k != "names"},
    }
    weights, card_path = write_weights_and_card(
        model, out_dir, config.name, arch.to_dict(), data, training, metrics, command
    )
    log.info("wrote %s and %s: %s", weights, card_path, json.dumps(metrics))
    return TrainResult(weights, card_path, metrics, seconds)


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
