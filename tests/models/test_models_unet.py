"""The seed U-Net: shapes, configurable width/depth, He-normal init."""

from __future__ import annotations

import pytest
import torch

from segshield.models import UNet, UNetConfig, unet


@pytest.mark.parametrize(("width", "depth"), [(4, 1), (8, 2), (4, 4)])
def test_unet_shapes(width: int, depth: int) -> None:
    torch.manual_seed(0)
    model = unet(in_channels=1, out_channels=1, base_width=width, depth=depth)
    out = model(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    assert len(model.encoders) == depth and len(model.decoders) == depth


def test_unet_multichannel() -> None:
    model = UNet(UNetConfig(in_channels=3, out_channels=4, base_width=4, depth=2))
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 4, 16, 16)


def test_he_normal_init_and_zero_bias() -> None:
    torch.manual_seed(0)
    model = unet(base_width=32, depth=2)
    conv = model.encoders[1][0]  # 32 -> 64 channels, fan_in = 32 * 9
    std = float(conv.weight.std())
    expected = (2.0 / (32 * 9)) ** 0.5
    assert abs(std - expected) / expected < 0.05
    assert float(conv.bias.abs().max()) == 0.0


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="depth"):
        UNetConfig(depth=0)
