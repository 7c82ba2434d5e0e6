"""Tiny seeded segmentation models and data for the attack tests (16x16, CPU, milliseconds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn


def tiny_net(out_channels: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Conv(3->8) - tanh - Conv(8->K): smooth (no ReLU kinks), so gradients are never exactly 0."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(8, out_channels, 3, padding=1),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net.to(dtype).eval()


@dataclass
class Case:
    """A model with a batch of images in [0, 1] and matching targets."""

    kind: str  # "binary" | "multiclass"
    model: nn.Module
    images: Tensor  # (N, 3, 16, 16)
    targets: Tensor  # (N, 1, 16, 16) float {0,1} or (N, 16, 16) long


def make_case(kind: str, *, n: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> Case:
    gen = torch.Generator().manual_seed(seed + 100)
    images = torch.rand(n, 3, 16, 16, generator=gen, dtype=dtype)
    if kind == "binary":
        model = tiny_net(1, seed=seed, dtype=dtype)
        targets = (torch.rand(n, 1, 16, 16, generator=gen) > 0.5).to(dtype)
    else:
        model = tiny_net(3, seed=seed, dtype=dtype)
        targets = torch.randint(0, 3, (n, 16, 16), generator=gen)
    return Case(kind, model, images, targets)


CaseFactory = Callable[..., Case]


@pytest.fixture(params=["binary", "multiclass"])
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(request.param)


@pytest.fixture
def binary_case() -> Case:
    return make_case("binary")


@pytest.fixture
def case_factory() -> CaseFactory:
    """``case_factory(kind, n=4, seed=0, dtype=torch.float32)`` for tests needing variants."""
    return make_case


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Run the attack tests on one intra-op thread, restored afterwards.

    The tensors here are tiny, so threads buy nothing; on a busy machine OpenMP workers
    spin-waiting for a core made each 10-step attack ~200x slower (1.4 s instead of 7 ms).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
