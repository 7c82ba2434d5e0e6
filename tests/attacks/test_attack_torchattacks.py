"""Cross-check against torchattacks (Kim, 2020): same model, data and budget, same points.

torchattacks always ascends ``nn.CrossEntropyLoss()`` with the default batch-*mean* reduction;
segshield's "bce" is cross-entropy per sample (mean over pixels), summed over the batch. The two
gradients differ by the factor N (a power of two here, so exactly), which no sign - and no
normalised L2 step, up to torchattacks' 1e-10 guard - can see. The random starts draw the same
numbers from the global RNG when it is seeded alike before each call.

Clipping order: torchattacks' BIM clips with ``max(x, max(x0 - eps, 0))``, then
``min(., x0 + eps)``, then ``min(., 1)``; segshield clamps to ``[x0 - eps, x0 + eps]`` then
``[0, 1]``. Both are exact min/max operations with the same result. Its PGD projects through
``x0 + clamp(x - x0, -eps, eps)``, which rounds differently from clamping ``x`` to
``[x0 - eps, x0 + eps]`` by at most one float32 ulp; hence atol 1e-7 there.

Binary segmentation: torchattacks' loss is hard-coded, so those cases swap
``nn.CrossEntropyLoss`` for ``nn.BCEWithLogitsLoss`` (batch-and-pixel mean) for the call.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import BIM, FGSM, PGD, PGDL2

torchattacks = pytest.importorskip(
    "torchattacks",
    reason="torchattacks is not installed (pip install --no-deps torchattacks==3.5.1; "
    "it declares torchvision, which its attacks never import)",
)

N = 8  # a power of two: dividing by N is exact


def classifier() -> tuple[nn.Module, Tensor, Tensor]:
    from segshield.models.classifier import SmallCNN

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SmallCNN(in_channels=1, num_classes=2, width=8).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(N, 1, 32, 32, generator=gen)
    labels = torch.randint(0, 2, (N,), generator=gen)
    return model, images, labels


def segmenter(channels: int) -> tuple[nn.Module, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, channels, 3, padding=1)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    images = torch.rand(N, 1, 16, 16, generator=gen)
    if channels == 1:
        labels = (torch.rand(N, 1, 16, 16, generator=gen) > 0.5).float()
    else:
        labels = torch.randint(0, channels, (N, 16, 16), generator=gen)
    return model.eval(), images, labels


SETUPS: dict[str, Callable[[], tuple[nn.Module, Tensor, Tensor]]] = {
    "classifier": classifier,
    "multiclass-segmentation": lambda: segmenter(3),
    "binary-segmentation": lambda: segmenter(1),
}


@pytest.fixture(params=sorted(SETUPS))
def setup(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[nn.Module, Tensor, Tensor]:
    if request.param == "binary-segmentation":
        monkeypatch.setattr(nn, "CrossEntropyLoss", nn.BCEWithLogitsLoss)
    return SETUPS[request.param]()


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255, 0.1])
def test_fgsm_identical(eps: float, setup: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, images, labels = setup
    theirs = torchattacks.FGSM(model, eps=eps)(images, labels)
    ours = FGSM(model, "bce", eps)(images, labels)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(("eps", "alpha", "steps"), [(8 / 255, 2 / 255, 10), (0.05, 0.02, 5)])
def test_bim_identical(
    eps: float, alpha: float, steps: int, setup: tuple[nn.Module, Tensor, Tensor]
) -> None:
    model, images, labels = setup
    theirs = torchattacks.BIM(model, eps=eps, alpha=alpha, steps=steps)(images, labels)
    ours = BIM(model, "bce", eps, steps=steps, alpha=alpha)(images, labels)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_same_start_same_result(
    random_start: bool, setup: tuple[nn.Module, Tensor, Tensor]
) -> None:
    model, images, labels = setup
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        theirs = attack(images, labels)
    with torch.random.fork_rng():
        torch.manual_seed(7)  # the same uniform_(-eps, eps) draw from the global RNG
        ours = PGD(model, "bce", eps, steps=steps, alpha=alpha, random_start=random_start)(
            images, labels
        )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgdl2_same_start_same_result(
    random_start: bool, setup: tuple[nn.Module, Tensor, Tensor]
) -> None:
    model, images, labels = setup
    eps, alpha, steps = 0.5, 0.1, 10
    attack = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        theirs = attack(images, labels)
    with torch.random.fork_rng():
        torch.manual_seed(7)  # the same normal_() and uniform_(0, 1) draws
        ours = PGDL2(model, "bce", eps, steps=steps, alpha=alpha, random_start=random_start)(
            images, labels
        )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
