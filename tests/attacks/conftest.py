"""Tiny seeded models and data for the attack tests (16x16, CPU, milliseconds).

Four kinds of output: "binary" (N, 1, H, W) sigmoid, "multilabel" (N, 3, H, W) independent
sigmoids, "multiclass" (N, 3, H, W) softmax, "classification" (N, 3) logits of a SmallCNN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from segshield.models.classifier import SmallCNN

KINDS = ["binary", "multilabel", "multiclass", "classification"]


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


def tiny_classifier(
    num_classes: int, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> nn.Module:
    """A narrow SmallCNN (3 -> 4 -> 8 channels, 16 hidden units) with seeded weights."""
    gen = torch.Generator().manual_seed(seed)
    net = SmallCNN(in_channels=3, num_classes=num_classes, width=4, hidden=16)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net.to(dtype).eval()


@dataclass
class Case:
    """A model with a batch of images in [0, 1] and matching targets."""

    kind: str  # one of KINDS
    model: nn.Module
    images: Tensor  # (N, 3, 16, 16)
    targets: Tensor  # (N, 1, 16, 16) / (N, 3, 16, 16) float {0,1}, (N, 16, 16) or (N,) long


def make_case(kind: str, *, n: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> Case:
    gen = torch.Generator().manual_seed(seed + 100)
    images = torch.rand(n, 3, 16, 16, generator=gen, dtype=dtype)
    if kind == "binary":
        model = tiny_net(1, seed=seed, dtype=dtype)
        targets = (torch.rand(n, 1, 16, 16, generator=gen) > 0.5).to(dtype)
    elif kind == "multilabel":
        model = tiny_net(3, seed=seed, dtype=dtype)
        targets = (torch.rand(n, 3, 16, 16, generator=gen) > 0.5).to(dtype)
    elif kind == "multiclass":
        model = tiny_net(3, seed=seed, dtype=dtype)
        targets = torch.randint(0, 3, (n, 16, 16), generator=gen)
    elif kind == "classification":
        model = tiny_classifier(3, seed=seed, dtype=dtype)
        targets = torch.randint(0, 3, (n,), generator=gen)
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    return Case(kind, model, images, targets)


CaseFactory = Callable[..., Case]


@pytest.fixture(params=KINDS)
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
def _single_thread(one_thread: None) -> None:
    """Every attack test on one intra-op thread (tests/conftest.py's ``one_thread``)."""


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """``with host_reads() as reads:`` counts Tensor -> Python conversions inside the block
    (each a device-to-host sync on a GPU): the no-sync-per-step tests."""

    @contextmanager
    def count() -> Iterator[list[str]]:
        reads: list[str] = []
        for method in ("__bool__", "item", "tolist", "__float__", "__int__"):
            real = getattr(torch.Tensor, method)

            def wrapped(self: Tensor, *args: Any, _real: Any = real, _m: str = method) -> Any:
                reads.append(_m)
                return _real(self, *args)

            monkeypatch.setattr(torch.Tensor, method, wrapped)
        yield reads
        monkeypatch.undo()

    return count
