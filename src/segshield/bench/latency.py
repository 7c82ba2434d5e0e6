"""Engine latency, measured the way trtexec and onnxruntime_perf_test do.

Warm up for a fixed *time* (lazy initialisation, allocator growth, kernel autotuning and CPU
frequency all settle), then time individual calls until at least `min_iters` iterations *and*
at least `min_duration_s` seconds have passed, and report the distribution, not just a mean.

Each iteration is one `runner.infer(batch)`: end-to-end host latency through the Runner
contract (input checks, host->device copy, compute, device->host copy), like trtexec's "host
latency". When a runner is on CUDA, `torch.cuda.synchronize()` follows every call so queued
GPU work is not mistaken for finished work.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segshield.engines.base import Runner
from segshield.errors import EngineUnavailableError

logger = logging.getLogger(__name__)

_CUDA_MARKERS = ("cuda", "tensorrt", "CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class LatencyStats:
    """Latency distribution of one engine at one batch size.

    Times are milliseconds per `infer` call over `iterations` timed calls (after
    `warmup_iterations` untimed ones lasting `warmup_s`); `throughput_ips` is images per second
    over the timed calls (batch_size * iterations / total time). Percentiles are linear
    interpolations; with fewer than 1000 iterations p99.9 is close to the maximum.
    """

    engine: str
    batch_size: int
    iterations: int
    duration_s: float
    warmup_iterations: int
    warmup_s: float
    min_ms: float
    mean_ms: float
    std_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    throughput_ips: float
    cuda_sync: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runner_on_cuda(runner: Runner) -> bool:
    """True when the runner computes on a CUDA device (torch device or ORT/TensorRT provider)."""
    providers = [str(p) for p in getattr(runner, "providers", [])]
    return any(marker.lower() in p.lower() for p in providers for marker in _CUDA_MARKERS)


def measure_latency(
    runner: Runner,
    batch: np.ndarray,
    *,
    warmup_s: float = 1.0,
    min_iters: int = 50,
    min_duration_s: float = 2.0,
    cuda_sync: bool | None = None,
    max_iters: int | None = None,
) -> LatencyStats:
    """Time `runner.infer(batch)`.

    Args:
        runner: any Runner.
        batch: float32 (N,C,H,W) images in [0,1]; N is the batch size measured.
        warmup_s: untimed warm-up time (at least one call is always made).
        min_iters: at least this many timed calls...
        min_duration_s: ...and at least this much timed wall time.
        cuda_sync: synchronise CUDA after every call; None: when the runner is on CUDA.
        max_iters: optional cap on timed calls (stops even if `min_duration_s` is not reached).

    Raises:
        EngineUnavailableError: `cuda_sync=True` but CUDA is not available.
        ValueError: bad arguments.
    """
    if min_iters < 1 or warmup_s < 0 or min_duration_s < 0:
        raise ValueError("min_iters must be >= 1, warmup_s and min_duration_s >= 0")
    if max_iters is not None and max_iters < min_iters:
        raise ValueError(f"max_iters ({max_iters}) must be >= min_iters ({min_iters})")
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[0] < 1:
        raise ValueError(f"batch must be images (N,C,H,W), got {getattr(batch, 'shape', batch)}")
    sync = _synchroniser(runner, cuda_sync)
    batch = np.ascontiguousarray(batch, dtype=np.float32)

    warm_iters, warm = _warm_up(runner, batch, sync, warmup_s)
    times = _timed_calls(runner, batch, sync, min_iters, min_duration_s, max_iters)
    ms = np.asarray(times, dtype=np.float64) / 1e6
    total_s = float(ms.sum()) / 1e3
    p90, p95, p99, p999 = np.percentile(ms, [90, 95, 99, 99.9])
    stats = LatencyStats(
        engine=str(getattr(runner, "name", type(runner).__name__)),
        batch_size=int(batch.shape[0]),
        iterations=len(times),
        duration_s=total_s,
        warmup_iterations=warm_iters,
        warmup_s=warm,
        min_ms=float(ms.min()),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        median_ms=float(np.median(ms)),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        p999_ms=float(p999),
        max_ms=float(ms.max()),
        throughput_ips=batch.shape[0] * len(times) / total_s if total_s > 0 else math.inf,
        cuda_sync=sync is not _no_sync,
    )
    logger.info(
        "%s batch %d: median %.3f ms, p99 %.3f ms, %.1f img/s (%d iters)",
        stats.engine,
        stats.batch_size,
        stats.median_ms,
        stats.p99_ms,
        stats.throughput_ips,
        stats.iterations,
    )
    return stats


def bench_engines(
    runners: Sequence[Runner],
    images: np.ndarray,
    batch_sizes: Sequence[int] = (1, 8),
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Latency of every runner at every batch size, on real `images`.

    A batch of size B is the first B images, repeated in order if there are fewer than B.
    Returns one row per (runner, batch size): engine, kind, precision, providers, status
    ("ok" | "error"), error, plus `LatencyStats` fields. A runner failing never stops the
    others. `kwargs` go to `measure_latency`.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim not in (4, 5) or len(images) == 0:
        raise ValueError(f"images must be (N,C,H,W) or (N,C,D,H,W), N >= 1, got {images.shape}")
    rows: list[dict[str, Any]] = []
    for runner in runners:
        for size in batch_sizes:
            batch = images[np.arange(size) % len(images)]
            row: dict[str, Any] = {
                "engine": getattr(runner, "name", type(runner).__name__),
                "kind": getattr(runner, "kind", None),
                "precision": getattr(runner, "precision", None),
                "providers": list(getattr(runner, "providers", [])),
                "batch_size": int(size),
            }
            try:
                row |= measure_latency(runner, batch, **kwargs).to_dict()
                row["status"], row["error"] = "ok", None
            except Exception as exc:  # one engine failing must not lose the others
                logger.error("latency of %s at batch %d failed: %s", row["engine"], size, exc)
                row["status"], row["error"] = "error", f"{type(exc).__name__}: {exc}"
            rows.append(row)
    return rows


def _warm_up(
    runner: Runner, batch: np.ndarray, sync: Callable[[], Any], warmup_s: float
) -> tuple[int, float]:
    """Untimed calls until `warmup_s` has passed (at least one); (calls, seconds)."""
    warm_iters = 0
    start = time.perf_counter()
    while True:
        runner.infer(batch)
        sync()
        warm_iters += 1
        if time.perf_counter() - start >= warmup_s:
            break
    return warm_iters, time.perf_counter() - start


def _timed_calls(
    runner: Runner,
    batch: np.ndarray,
    sync: Callable[[], Any],
    min_iters: int,
    min_duration_s: float,
    max_iters: int | None,
) -> list[int]:
    """Nanoseconds of each timed call, until `min_iters` calls *and* `min_duration_s` have
    passed, or `max_iters` calls were made."""
    times: list[int] = []
    clock = time.perf_counter_ns
    begin = clock()
    deadline = begin + int(min_duration_s * 1e9)
    while True:
        t0 = clock()
        runner.infer(batch)
        sync()
        t1 = clock()
        times.append(t1 - t0)
        n = len(times)
        if max_iters is not None and n >= max_iters:
            break
        if n >= min_iters and t1 >= deadline:
            break
    return times


def _no_sync() -> None:
    return None


def _synchroniser(runner: Runner, cuda_sync: bool | None) -> Any:
    wanted = runner_on_cuda(runner) if cuda_sync is None else cuda_sync
    if not wanted:
        return _no_sync
    import torch

    if not torch.cuda.is_available():
        if cuda_sync:
            raise EngineUnavailableError(
                "cuda_sync=True but CUDA is not available to PyTorch; nothing to synchronise"
            )
        return _no_sync  # e.g. an ORT CUDA runner with CPU torch: ORT's run() already blocks
    return torch.cuda.synchronize


__all__ = ["LatencyStats", "bench_engines", "measure_latency", "runner_on_cuda"]
