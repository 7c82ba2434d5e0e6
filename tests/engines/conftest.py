"""Fixtures for engine tests: the tiny U-Net's verified ONNX export (the model itself is in
tests/conftest.py) and the bundled model with real nuclei data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segshield.exporters import OnnxExport, onnx_from_torch


@pytest.fixture(scope="session")
def unet_onnx(tmp_path_factory: pytest.TempPathFactory, unet_factory) -> OnnxExport:
    """The TinyUNet exported once per session (exporting takes ~1 s)."""
    gen = torch.Generator().manual_seed(1)
    sample = torch.rand(2, 3, 32, 32, generator=gen)
    path: Path = tmp_path_factory.mktemp("onnx") / "tiny_unet.onnx"
    # fixed height/width: the runner tests check the refusal of other sizes
    return onnx_from_torch(unet_factory(), sample, path, dynamic_hw=False)


@pytest.fixture
def batch() -> np.ndarray:
    """Six seeded float32 images (6,3,32,32) in [0,1]."""
    return np.random.default_rng(3).random((6, 3, 32, 32), dtype=np.float32)


# ----------------------------------------------------------- bundled model and real images


@pytest.fixture(scope="session")
def bundled_unet() -> nn.Module:
    """The bundled 481k-parameter nuclei U-Net (1x128x128 -> 1 logit channel), eval mode."""
    from segshield.models import bundled_model

    return bundled_model().module.eval()


@pytest.fixture(scope="session")
def nuclei_train():
    """Real nuclei training tiles: calibration images (12, 1, 128, 128) in [0,1]."""
    from segshield.data import bundled_dataset

    return bundled_dataset("nuclei", "train")


@pytest.fixture(scope="session")
def nuclei_test():
    """Real nuclei test tiles: parity images (4, 1, 128, 128) in [0,1] and masks."""
    from segshield.data import bundled_dataset

    return bundled_dataset("nuclei", "test")


@pytest.fixture(scope="session")
def cpu_engines(tmp_path_factory: pytest.TempPathFactory, bundled_unet, nuclei_train, nuclei_test):
    """Every CPU engine built once per session on the bundled model (AOTInductor compile
    included: ~15-35 s on a 2-core machine). Returns (out_dir, list[BuiltEngine])."""
    from segshield.engines import CPU_ENGINES, BuildOptions, build_engines

    out = tmp_path_factory.mktemp("engines")
    built = build_engines(
        list(CPU_ENGINES),
        bundled_unet,
        nuclei_train.images,
        out,
        sample=nuclei_test.images,
        options=BuildOptions(calibration_source="bundled:nuclei/train"),
    )
    return out, built
