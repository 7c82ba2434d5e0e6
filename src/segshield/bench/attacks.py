"""Attack throughput, and how close it is to its floor of k x (one forward + one backward).

A k-step gradient attack cannot be cheaper than k forward passes plus k backward passes to
the input. `measure_attack_throughput` times the attack and, separately, one forward +
input-gradient backward with the attack's own loss, and reports the ratio: ~1.0 means the
attack loop adds nothing; much more than 1 means overhead worth removing (projections,
allocations, host syncs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.attacks.base import Attack

logger = logging.getLogger(__name__)

AttackFactory = Callable[[nn.Module], Attack]


def measure_attack_throughput(
    model: nn.Module,
    attack_factory: AttackFactory,
    images: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    steps: int | None = None,
    *,
    warmup: int = 1,
    min_repeats: int = 3,
    min_duration_s: float = 1.0,
) -> dict[str, Any]:
    """Images/s of one attack on one batch, and its ratio to the k-step floor.

    Args:
        model: the source model (eval mode is set; parameters' requires_grad is switched off
            during the measurement, as the audit does, and restored afterwards).
        attack_factory: `model -> Attack`, e.g. `lambda m: get_attack("pgd", m, "bce", 4/255,
            steps=10)`.
        images: float32 (N,C,H,W) real images in [0,1] (one batch).
        targets: what the attack's loss takes, e.g. (N,1,H,W) {0,1} masks.
        steps: k, gradient evaluations per attack (default: the attack's `steps`, else 1).
        warmup, min_repeats, min_duration_s: untimed runs, then timed runs until both minima.

    Returns a dict: attack, params, steps, batch_size, attack_ms (median per batch),
    images_per_s, fwd_bwd_ms (median, one forward + backward to the input), floor_ms
    (steps * fwd_bwd_ms), floor_images_per_s, ratio_to_floor (attack_ms / floor_ms), repeats,
    fwd_bwd_repeats, device.
    """
    device = _device_of(model)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if isinstance(images, np.ndarray)
                        else images).to(device)  # fmt: skip
    y = torch.as_tensor(targets).to(device)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must be a batch (N,C,H,W), got {tuple(x.shape)}")
    model.eval()
    attack = attack_factory(model)
    k = int(steps if steps is not None else attack.attack_params().get("steps", 1))
    if k < 1:
        raise ValueError(f"steps must be >= 1, got {k}")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run_attack() -> None:
        attack(x, y)
        sync()

    def fwd_bwd() -> None:
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            loss = attack.loss(model(xi), y)
            torch.autograd.grad(loss.sum(), xi)
        sync()

    with _frozen_parameters(model):
        attack_s = _repeat(run_attack, warmup, min_repeats, min_duration_s)
        fb_s = _repeat(fwd_bwd, warmup, min_repeats, min_duration_s)
    result = _throughput_row(attack, k, int(x.shape[0]), attack_s, fb_s, device)
    logger.info(
        "%s (k=%d) batch %d: %.1f ms, %.1f img/s, %.2fx the k x fwd+bwd floor",
        attack.name,
        k,
        result["batch_size"],
        result["attack_ms"],
        result["images_per_s"],
        result["ratio_to_floor"],
    )
    return result


def _throughput_row(
    attack: Attack,
    k: int,
    n: int,
    attack_s: list[float],
    fb_s: list[float],
    device: torch.device,
) -> dict[str, Any]:
    """The result row from the timed attack runs and forward+backward runs (seconds each)."""
    attack_ms = float(np.median(attack_s)) * 1e3
    fb_ms = float(np.median(fb_s)) * 1e3
    floor_ms = k * fb_ms
    return {
        "attack": attack.name,
        "params": attack.attack_params(),
        "steps": k,
        "batch_size": n,
        "attack_ms": attack_ms,
        "images_per_s": n / (attack_ms / 1e3),
        "fwd_bwd_ms": fb_ms,
        "floor_ms": floor_ms,
        "floor_images_per_s": n / (floor_ms / 1e3),
        "ratio_to_floor": attack_ms / floor_ms,
        "repeats": len(attack_s),
        "fwd_bwd_repeats": len(fb_s),
        "device": str(device),
    }


def _repeat(fn: Callable[[], None], warmup: int, min_repeats: int, min_s: float) -> list[float]:
    for _ in range(max(warmup, 0)):
        fn()
    times: list[float] = []
    begin = time.perf_counter()
    while len(times) < max(min_repeats, 1) or time.perf_counter() - begin < min_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


@contextmanager
def _frozen_parameters(model: nn.Module) -> Any:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _device_of(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


__all__ = ["AttackFactory", "measure_attack_throughput"]
