"""Fixtures for the pytest-benchmark suite: the bundled U-Net, real nuclei images, and the CPU
engines built from it (once per session).

Run: `.venv/bin/python -m pytest benchmarks --benchmark-only`. Not part of the CI test run.
Set SEGSHIELD_BENCH_ENGINES_DIR to a folder from `segshield export` (a manifest.json) to reuse
engines instead of rebuilding them (the AOTInductor compile takes 15-35 s on 2 cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH_ENGINES = ("pytorch", "ort-fp32", "ort-fp16", "ort-int8", "aoti-fp32")
BATCH_SIZES = (1, 8)


@pytest.fixture(scope="session")
def model() -> torch.nn.Module:
    from segshield.models import bundled_model

    module = bundled_model().module.eval()
    for p in module.parameters():
        p.requires_grad_(False)  # as the audit does: attacks need input gradients only
    return module


@pytest.fixture(scope="session")
def nuclei_train():
    from segshield.data import bundled_dataset

    return bundled_dataset("nuclei", "train")


@pytest.fixture(scope="session")
def nuclei_test():
    from segshield.data import bundled_dataset

    return bundled_dataset("nuclei", "test")


@pytest.fixture(scope="session")
def engines(model, nuclei_train, nuclei_test, tmp_path_factory) -> dict:
    """name -> BuiltEngine for BENCH_ENGINES (status "ok" or the reason it is not)."""
    from segshield.engines import BuildOptions, build_engines, runners_from_manifest

    reuse = os.environ.get("SEGSHIELD_BENCH_ENGINES_DIR")
    if reuse:
        built = runners_from_manifest(Path(reuse), model, names=list(BENCH_ENGINES))
    else:
        built = build_engines(
            list(BENCH_ENGINES),
            model,
            nuclei_train.images,
            tmp_path_factory.mktemp("bench-engines"),
            sample=nuclei_test.images,
            options=BuildOptions(calibration_source="bundled:nuclei/train"),
        )
    return {b.name: b for b in built}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `engine_name` over BENCH_ENGINES and `batch_size` over BATCH_SIZES."""
    if "engine_name" in metafunc.fixturenames:
        metafunc.parametrize("engine_name", BENCH_ENGINES)
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", BATCH_SIZES)


@pytest.fixture
def real_batch(nuclei_test, batch_size: int) -> np.ndarray:
    """`batch_size` real test images: the first ones, repeated in order if there are fewer."""
    images = nuclei_test.images
    return np.ascontiguousarray(images[np.arange(batch_size) % len(images)])
