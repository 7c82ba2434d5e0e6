"""Latency and attack-throughput measurement: statistics sanity (no timing thresholds),
CUDA paths unavailable on this CPU machine, Markdown rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segshield.attacks import get_attack
from segshield.bench import (
    CudaGraphTorchRunner,
    attack_throughput_table,
    bench_engines,
    engines_table,
    latency_table,
    measure_attack_throughput,
    measure_latency,
    runner_on_cuda,
)
from segshield.bench.markdown import fmt_num, markdown_table
from segshield.engines import TorchRunner
from segshield.errors import EngineUnavailableError

FAST = {"warmup_s": 0.0, "min_iters": 7, "min_duration_s": 0.0}


class _Broken:
    name, kind, precision, providers = "broken", "test", "fp32", ["cpu"]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")


def test_latency_stats_are_ordered_and_complete(unet, batch):
    stats = measure_latency(TorchRunner(unet), batch[:2], **FAST)
    assert stats.engine == "pytorch" and stats.batch_size == 2
    assert stats.iterations >= 7 and stats.warmup_iterations >= 1
    chain = [stats.min_ms, stats.median_ms, stats.p90_ms, stats.p95_ms, stats.p99_ms,
             stats.p999_ms, stats.max_ms]  # fmt: skip
    assert chain == sorted(chain) and stats.min_ms > 0
    assert stats.min_ms <= stats.mean_ms <= stats.max_ms
    assert stats.throughput_ips == pytest.approx(2 * stats.iterations / stats.duration_s)
    assert stats.cuda_sync is False
    assert json.loads(json.dumps(stats.to_dict())) == stats.to_dict()


def test_min_duration_extends_past_min_iters(unet, batch):
    stats = measure_latency(TorchRunner(unet), batch[:1], warmup_s=0.05, min_iters=1,
                            min_duration_s=0.2)  # fmt: skip
    assert stats.duration_s >= 0.15  # timed calls only; the loop ran at least 0.2 s
    assert stats.warmup_s >= 0.05
    capped = measure_latency(TorchRunner(unet), batch[:1], warmup_s=0, min_iters=3,
                             min_duration_s=60, max_iters=3)  # fmt: skip
    assert capped.iterations == 3


def test_bad_arguments(unet, batch):
    runner = TorchRunner(unet)
    with pytest.raises(ValueError, match="min_iters"):
        measure_latency(runner, batch, min_iters=0)
    with pytest.raises(ValueError, match="max_iters"):
        measure_latency(runner, batch, min_iters=5, max_iters=2)
    with pytest.raises(ValueError, match="batch must be images"):
        measure_latency(runner, batch[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_cuda_sync_and_cuda_graphs_unavailable_on_cpu(unet, batch):
    runner = TorchRunner(unet)
    assert runner_on_cuda(runner) is False
    with pytest.raises(EngineUnavailableError, match="CUDA is not available"):
        measure_latency(runner, batch, cuda_sync=True, **FAST)
    with pytest.raises(EngineUnavailableError, match="CUDA graphs need a CUDA device"):
        CudaGraphTorchRunner(unet, (1, 3, 32, 32))


def test_runner_on_cuda_reads_providers():
    class Fake:
        providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

    assert runner_on_cuda(Fake())  # type: ignore[arg-type]


def test_bench_engines_rows_and_failures(unet, unet_onnx, batch):
    from segshield.engines import OrtRunner

    runners = [TorchRunner(unet), _Broken(), OrtRunner(unet_onnx.path)]
    rows = bench_engines(runners, batch[:3], (1, 4), **FAST)  # 4 > 3 images: repeated
    assert [(r["engine"], r["batch_size"]) for r in rows] == [
        ("pytorch", 1), ("pytorch", 4), ("broken", 1), ("broken", 4),
        ("onnxruntime-cpu", 1), ("onnxruntime-cpu", 4),
    ]  # fmt: skip
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and all(r["iterations"] >= 7 for r in ok)
    broken = [r for r in rows if r["engine"] == "broken"]
    assert all(r["status"] == "error" and "boom" in r["error"] for r in broken)
    table = latency_table(rows)
    assert table.count("\n") == 2 + len(rows)
    assert "| pytorch | fp32 | 4 |" in table and "error: RuntimeError: boom" in table


def test_attack_throughput_against_its_floor(unet, batch):
    params = [p.requires_grad for p in unet.parameters()]
    x = torch.from_numpy(batch[:2])
    y = (x[:, :1] > 0.5).float()
    # TinyUNet has 2 classes; the BCE loss wants one channel, so attack a 1-channel head.
    model = torch.nn.Sequential(unet, torch.nn.Conv2d(2, 1, 1)).eval()
    rows = [
        measure_attack_throughput(model, lambda m: get_attack("fgsm", m, "bce", 4 / 255), x, y,
                                  warmup=1, min_repeats=2, min_duration_s=0.0),
        measure_attack_throughput(model, lambda m: get_attack("pgd", m, "bce", 4 / 255,
                                  steps=3), x, y, 3, warmup=0, min_repeats=2, min_duration_s=0.0),
    ]  # fmt: skip
    fgsm, pgd = rows
    assert (fgsm["attack"], fgsm["steps"]) == ("fgsm", 1)
    assert (pgd["attack"], pgd["steps"], pgd["params"]["steps"]) == ("pgd", 3, 3)
    for r in rows:
        assert r["batch_size"] == 2 and r["repeats"] >= 2
        assert r["floor_ms"] == pytest.approx(r["steps"] * r["fwd_bwd_ms"])
        assert r["ratio_to_floor"] == pytest.approx(r["attack_ms"] / r["floor_ms"])
        assert r["images_per_s"] > 0
    assert [p.requires_grad for p in unet.parameters()] == params  # restored
    table = attack_throughput_table(rows)
    assert "| pgd | 3 | 2 |" in table


def test_markdown_formatting():
    table = markdown_table(["a", "b"], [["x|y", 1.5], [None, "two\nlines"]])
    assert table.splitlines() == ["| a | b |", "| :--- | ---: |", "| x\\|y | 1.5 |",
                                  "| - | two lines |"]  # fmt: skip
    assert fmt_num(None) == "-" and fmt_num(float("nan")) == "-" and fmt_num(0.0) == "0"
    assert fmt_num(3) == "3" and fmt_num(12.3456) == "12.35" and fmt_num(1234.5) == "1234.5"
    assert fmt_num(2.5e-7) == "2.50e-07" and fmt_num(0.0924) == "0.0924"
    rec = {"name": "ort-int8", "status": "unavailable", "precision": "int8", "providers": [],
           "reason": "no GPU", "parity": None, "build_seconds": None}  # fmt: skip
    assert "| ort-int8 | unavailable | int8 | - |" in engines_table([rec])
