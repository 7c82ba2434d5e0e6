"""Inference latency of each CPU engine on the bundled U-Net, batch 1 and 8 of real images.

`engine_name` and `batch_size` are parametrized in conftest.py (BENCH_ENGINES x BATCH_SIZES).
"""

from __future__ import annotations

import pytest


def test_engine_inference(benchmark, engines, engine_name, batch_size, real_batch):
    built = engines[engine_name]
    if not built.ok:
        pytest.skip(f"{engine_name} {built.record.status}: {built.record.reason}")
    runner = built.runner
    runner.infer(real_batch)  # load/warm-up outside the timed rounds
    benchmark.group = f"engines-batch{batch_size}"
    benchmark.extra_info |= {
        "engine": engine_name,
        "precision": built.record.precision,
        "providers": built.record.providers,
        "batch_size": batch_size,
        "flip_share": (built.record.parity or {}).get("flip_share"),
    }
    logits = benchmark.pedantic(runner.infer, args=(real_batch,), rounds=30, warmup_rounds=3)
    assert logits.shape == (batch_size, 1, 128, 128)
