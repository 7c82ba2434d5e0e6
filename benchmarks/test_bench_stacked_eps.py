"""Stacked ε: PGD-10 over 4 budgets on 4 images of the bundled U-Net, as the audit crafts
them - ε by ε (4 batches of 4 images) or stacked (ONE batch of 16 samples, each with its own
ε, step size and per-image generator). Target: stacked <= 0.8x the per-ε time.

Run: `.venv/bin/python -m pytest benchmarks/test_bench_stacked_eps.py --benchmark-only -s`
(the ratio is printed and stored in the stacked run's extra_info). It runs on CUDA when there
is one (where small batches leave the device idle); on a CPU whose cores a batch of 4 already
fills, stacking gains little (measured 0.97x on 2 cores).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from segshield.attacks import get_attack

EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
N_IMAGES, BATCH_SIZE, STEPS = 4, 16, 10
_MEDIANS: dict[str, float] = {}
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="module")
def placed_model(model) -> torch.nn.Module:
    """The bundled U-Net on DEVICE (a copy: the session's model stays where it is)."""
    return copy.deepcopy(model).to(DEVICE) if DEVICE.type != "cpu" else model


@pytest.fixture(scope="module")
def four(nuclei_test) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(nuclei_test.images[:N_IMAGES]))
    y = torch.from_numpy(nuclei_test.masks[:N_IMAGES].astype(np.float32))
    return x.to(DEVICE), y.to(DEVICE)


def _gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def per_eps(model, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """One batch of the 4 images per ε (the audit before stacking)."""
    advs = []
    for k, e in enumerate(EPSILONS):
        gens = _gens([10 * k + i for i in range(len(x))])
        advs.append(get_attack("pgd", model, "bce", e, steps=STEPS, generator=gens)(x, y))
    return advs


def stacked(model, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """All 4 ε x 4 images as one batch of 16 samples."""
    n, k = len(x), len(EPSILONS)
    seeds = [10 * j + i for j in range(k) for i in range(n)]
    attack = get_attack("pgd", model, "bce", EPSILONS[0], steps=STEPS, generator=_gens(seeds))
    adv = attack(x.repeat(k, 1, 1, 1), y.repeat(k, 1, 1, 1), eps=[e for e in EPSILONS for _ in x])
    return list(adv.split(n))


@pytest.mark.parametrize("mode", ["per_eps", "stacked"])
def test_pgd10_four_eps(benchmark, placed_model, four, mode: str) -> None:
    x, y = four
    model = placed_model
    run = per_eps if mode == "per_eps" else stacked
    benchmark.group = "stacked-eps"
    benchmark.extra_info |= {
        "mode": mode, "steps": STEPS, "epsilons": len(EPSILONS), "images": N_IMAGES,
        "batch_size": BATCH_SIZE, "threads": torch.get_num_threads(), "device": str(DEVICE),
    }  # fmt: skip
    advs = benchmark.pedantic(run, args=(model, x, y), rounds=5, warmup_rounds=1)
    for adv, e in zip(advs, EPSILONS, strict=True):
        assert float((adv - x).abs().max()) <= e + 1e-6
    if benchmark.stats is not None:
        _MEDIANS[mode] = benchmark.stats.stats.median
    if mode == "stacked" and len(_MEDIANS) == 2:
        ratio = _MEDIANS["stacked"] / _MEDIANS["per_eps"]
        benchmark.extra_info["ratio_vs_per_eps"] = ratio
        print(f"\nstacked / per-eps median time: {ratio:.3f} (target <= 0.8)")


def test_stacked_matches_per_eps(placed_model, four) -> None:
    """Same samples, same generators: the stacked images are the per-ε ones (bitwise on the
    CPU here: conv gives a batch of 16 the same bits as batches of 4)."""
    x, y, model = *four, placed_model
    for a, b in zip(stacked(model, x, y), per_eps(model, x, y), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
