"""A repeated default audit (bundled model, default engines, the 4 nuclei test tiles) with a
warm engine cache against a cold one: the warm run skips the ONNX export, the INT8
calibration and the AOTInductor compile, and re-measures parity instead.

Cold rounds each start from an empty cache folder (Inductor's own on-disk cache is left as
the environment has it, so a cold round after the first is already faster than a first-ever
build: the ratio is conservative). SEGSHIELD_BENCH_CACHE_ROUNDS sets the rounds (default 2).
The target is a ratio <= 0.6; above it the benchmark warns (on a shared 2-core machine the
attacks and latency of the audit itself vary by more than the build it saves).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from pathlib import Path

import pytest

from segshield.audits import AuditConfig, run_audit

ROUNDS = int(os.environ.get("SEGSHIELD_BENCH_CACHE_ROUNDS", "2"))
TARGET_RATIO = 0.6


def _audit(out: Path, cache: Path):
    return run_audit(AuditConfig(out, limit=4, engine_cache_dir=cache))


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Wall seconds of ROUNDS cold audits; the last one's cache is left filled."""
    root = tmp_path_factory.mktemp("cold")
    seconds = []
    for i in range(ROUNDS):
        start = time.perf_counter()
        report = _audit(root / f"out{i}", root / f"cache{i}")
        seconds.append(time.perf_counter() - start)
        assert report.build["engine_cache"]["hits"] == []
    return {"seconds": seconds, "cache": root / f"cache{ROUNDS - 1}", "report": report}


def test_audit_with_a_warm_engine_cache(benchmark, cold, tmp_path: Path) -> None:
    runs = iter(range(ROUNDS))
    reports = []

    def warm() -> None:
        reports.append(_audit(tmp_path / f"out{next(runs)}", cold["cache"]))

    benchmark.group = "engine-cache"
    benchmark.pedantic(warm, rounds=ROUNDS, iterations=1)
    cold_s, warm_s = statistics.median(cold["seconds"]), benchmark.stats.stats.median
    ratio = warm_s / cold_s
    benchmark.extra_info |= {
        "cold_seconds": [round(s, 2) for s in cold["seconds"]],
        "warm_seconds": [round(s, 2) for s in benchmark.stats.stats.data],
        "ratio_warm_to_cold": round(ratio, 3),
        "engines": [e.name for e in reports[-1].engines],
    }
    print(f"\nengine cache: cold {cold_s:.1f} s, warm {warm_s:.1f} s, ratio {ratio:.2f}")
    hits = reports[-1].build["engine_cache"]["hits"]
    assert hits == [e.name for e in cold["report"].engines if e.status == "ok"][1:]
    assert all(c.status == "ok" for c in reports[-1].cells)
    if ratio > TARGET_RATIO:  # attacks and latency dominate when Inductor's cache is warm
        warnings.warn(f"warm/cold ratio {ratio:.2f} above the {TARGET_RATIO} target", stacklevel=1)
