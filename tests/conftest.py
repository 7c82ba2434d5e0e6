"""Shared fixtures: the one tiny seeded test U-Net (engines and exporters), and one real
end-to-end `segshield audit` through the CLI (bundled model, real nuclei tiles, real ONNX
Runtime), reused by the tests that read its report."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from segshield.cli.main import app


def pytest_configure(config: pytest.Config) -> None:
    """Session-scoped fixtures (the e2e audit) run before any per-test fixture: point the
    engine cache at a throwaway folder for the whole session, never the user's cache."""
    config._segshield_cache = tempfile.mkdtemp(prefix="segshield-test-cache-")  # type: ignore[attr-defined]
    os.environ["SEGSHIELD_CACHE_DIR"] = config._segshield_cache  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = getattr(config, "_segshield_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def engine_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Every test gets its own engine cache ($SEGSHIELD_CACHE_DIR): tests never share one
    or touch the user's."""
    folder = tmp_path_factory.mktemp("segshield-cache")
    monkeypatch.setenv("SEGSHIELD_CACHE_DIR", str(folder))
    return folder


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


def make_tiny_unet(seed: int = 0) -> TinyUNet:
    """A fresh seeded TinyUNet in eval mode, with non-trivial BatchNorm statistics so that
    eval-mode export is actually exercised."""
    torch.manual_seed(seed)
    model = TinyUNet()
    with torch.no_grad():
        model.enc1[1].running_mean.uniform_(-0.2, 0.2)
        model.enc1[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def unet() -> TinyUNet:
    return make_tiny_unet()


@pytest.fixture(scope="session")
def unet_factory():
    """`make_tiny_unet(seed)` (tests must not import conftest)."""
    return make_tiny_unet


E2E_ARGS = [
    "--limit",
    "2",
    "--epsilons",
    "2/255,8/255",
    "--steps",
    "3",
    "--batch-size",
    "2",
]


@dataclass
class CliAudit:
    exit_code: int
    output: str
    out_dir: Path
    report: dict


@pytest.fixture(scope="session")
def cli_audit(tmp_path_factory: pytest.TempPathFactory) -> CliAudit:
    out = tmp_path_factory.mktemp("e2e")
    result = CliRunner().invoke(app, ["audit", "--out", str(out), *E2E_ARGS])
    report_path = out / "report.json"
    assert report_path.is_file(), result.output
    return CliAudit(result.exit_code, result.output, out, json.loads(report_path.read_text()))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread, restored afterwards: for tests on tiny tensors, where threads buy
    nothing and, on a busy machine, OpenMP workers spin-waiting for a core made each 10-step
    attack ~200x slower (1.4 s instead of 7 ms). Use with ``pytest.mark.usefixtures``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_conv_net(dims: int = 2, out_channels: int = 1, seed: int = 0) -> nn.Module:
    """A seeded two-layer conv net in eval mode: (N, 1, *spatial) -> (N, out_channels,
    *spatial) logits, 2-D or 3-D (a stand-in for a user's U-Net on images or volumes)."""
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[dims]
    torch.manual_seed(seed)
    return nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), conv(4, out_channels, 1)).eval()


@pytest.fixture(scope="session")
def conv_net():
    """`make_conv_net(dims, out_channels, seed)` (tests must not import conftest)."""
    return make_conv_net
