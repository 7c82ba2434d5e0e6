"""Fixtures for exporter tests: a tiny seeded U-Net-like model on 32x32 RGB images."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyUNet(nn.Module):
    """Two-level U-Net: conv/BN/ReLU, maxpool, transposed conv, skip concat; 3 -> 2 classes."""

    def __init__(self, in_ch: int = 3, classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(2)
        self.enc2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc1(x)
        deep = self.enc2(self.pool(skip))
        return self.head(self.dec(torch.cat([self.up(deep), skip], dim=1)))


def make_unet(seed: int = 0) -> TinyUNet:
    torch.manual_seed(seed)
    model = TinyUNet()
    # Non-trivial BatchNorm statistics so eval-mode export is actually exercised.
    with torch.no_grad():
        model.enc1[1].running_mean.uniform_(-0.2, 0.2)
        model.enc1[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def unet() -> TinyUNet:
    return make_unet()


@pytest.fixture
def images() -> torch.Tensor:
    """Four seeded float32 images (4,3,32,32) in [0,1]."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 32, 32, generator=gen)


@pytest.fixture
def unet_factory():
    """`make_unet(seed)`: a fresh seeded TinyUNet in eval mode (tests must not import conftest)."""
    return make_unet
