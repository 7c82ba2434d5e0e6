"""Attack cost on the bundled U-Net: FGSM, PGD-10, and one forward+backward (the floor unit:
a k-step attack costs at least k of them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segshield.attacks import get_attack, get_loss

EPS = 4 / 255


@pytest.fixture(scope="module")
def batch(nuclei_test):
    x = torch.from_numpy(nuclei_test.images)
    y = torch.from_numpy(nuclei_test.masks.astype(np.float32))
    return x, y


def test_forward_backward_to_input(benchmark, model, batch):
    x, y = batch
    loss = get_loss("bce")

    def fwd_bwd() -> torch.Tensor:
        xi = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(model(xi), y).sum(), xi)
        return grad

    benchmark.group = "attacks"
    benchmark.extra_info |= {"steps": 1, "batch_size": len(x)}
    grad = benchmark.pedantic(fwd_bwd, rounds=10, warmup_rounds=1)
    assert grad.shape == x.shape


@pytest.mark.parametrize(
    ("attack", "params", "steps"), [("fgsm", {}, 1), ("pgd", {"steps": 10}, 10)]
)
def test_attack(benchmark, model, batch, attack, params, steps):
    x, y = batch
    if attack == "pgd":
        params = {**params, "generator": torch.Generator().manual_seed(0)}
    adversary = get_attack(attack, model, "bce", EPS, **params)
    benchmark.group = "attacks"
    benchmark.extra_info |= {"attack": attack, "steps": steps, "eps": EPS, "batch_size": len(x)}
    adv = benchmark.pedantic(adversary, args=(x, y), rounds=5 if steps > 1 else 10,
                             warmup_rounds=1)  # fmt: skip
    assert adv.shape == x.shape
    assert float((adv - x).abs().max()) <= EPS + 1e-6
