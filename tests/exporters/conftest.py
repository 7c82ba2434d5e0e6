"""Fixtures for exporter tests: 32x32 RGB images (the tiny U-Net is in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def images() -> torch.Tensor:
    """Four seeded float32 images (4,3,32,32) in [0,1]."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 32, 32, generator=gen)
