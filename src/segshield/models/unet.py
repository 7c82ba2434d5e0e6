"""The U-Net of seed unet-busi (Ronneberger et al., 2015, as used by Abdelrahman et al.).

Conv block: two 3x3 convolutions, same padding, ReLU, He-normal init. Encoder: conv block then
2x2 max-pool. Decoder: 2x2 transposed convolution, concatenation with the skip, conv block.
Head: 1x1 convolution producing logits (sigmoid at inference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a `UNet`. Widths are base_width * 2**level for level 0..depth."""

    in_channels: int = 1
    out_channels: int = 1
    base_width: int = 16
    depth: int = 3

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("in_channels and out_channels must be >= 1")
        if self.base_width < 1 or not 1 <= self.depth <= 6:
            raise ValueError(f"base_width must be >= 1 and depth in 1..6, got {self}")

    def to_dict(self) -> dict:
        return {"architecture": "unet", **asdict(self)}


def _he_normal(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ConvBlock(nn.Sequential):
    """Two 3x3 conv + ReLU, same padding: (N, c_in, H, W) -> (N, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net: (N, in_channels, H, W) in [0, 1] -> logits (N, out_channels, H, W).

    H and W must be divisible by 2**depth.
    """

    def __init__(self, config: UNetConfig | None = None, **kwargs: int) -> None:
        super().__init__()
        self.config = config or UNetConfig(**kwargs)
        cfg = self.config
        widths = [cfg.base_width * 2**i for i in range(cfg.depth + 1)]
        self.encoders = nn.ModuleList()
        c = cfg.in_channels
        for w in widths[:-1]:
            self.encoders.append(ConvBlock(c, w))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_deep, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.ups.append(nn.ConvTranspose2d(w_deep, w, kernel_size=2, stride=2))
            self.decoders.append(ConvBlock(2 * w, w))
        self.head = nn.Conv2d(widths[0], cfg.out_channels, kernel_size=1)
        self.apply(_he_normal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def unet(in_channels: int = 1, out_channels: int = 1, base_width: int = 16, depth: int = 3) -> UNet:
    """Factory usable as `--model segshield.models.unet:unet`."""
    return UNet(UNetConfig(in_channels, out_channels, base_width, depth))
