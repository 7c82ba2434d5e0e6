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
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.attacks import ATTACKS, get_attack
from segshield.attacks.base import Attack
from segshield.devices import module_device
from segshield.errors import SegShieldError

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
    device = module_device(model)
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


def check_attack_names(attacks: Sequence[str]) -> None:
    """Refuse unknown attack names (before any measurement starts).

    Raises:
        SegShieldError: naming the unknown attacks and the known ones.
    """
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise SegShieldError(f"unknown attack(s) {unknown}; choose from {sorted(ATTACKS)}")


def bench_attacks(
    model: nn.Module,
    attacks: Sequence[str],
    images: np.ndarray,
    masks: np.ndarray,
    steps: int,
    epsilon: float = 4 / 255,
) -> list[dict[str, Any]]:
    """`measure_attack_throughput` of each named attack (BCE loss, `steps` where the attack
    takes steps) on the device the model is on; one row per attack."""
    check_attack_names(attacks)
    targets = np.asarray(masks, dtype=np.float32)
    rows = []
    for name in attacks:
        opts = {"steps": steps} if "steps" in ATTACKS[name].param_names() else {}

        def factory(m: nn.Module, name: str = name, opts: dict = opts) -> Attack:
            return get_attack(name, m, "bce", epsilon, **opts)

        rows.append(measure_attack_throughput(model, factory, images, targets))
    return rows


__all__ = ["AttackFactory", "bench_attacks", "check_attack_names", "measure_attack_throughput"]
