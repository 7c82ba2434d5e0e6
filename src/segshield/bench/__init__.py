"""Latency and throughput measurement: engines (trtexec-style) and attacks (vs. their floor).

`measure_latency` / `bench_engines` time Runners; `measure_attack_throughput` times an attack
against k x (forward + backward); `segshield.bench.markdown` renders the results. Nothing
here imports onnxruntime or tensorrt.
"""

from __future__ import annotations

from segshield.bench.attacks import (
    bench_attacks,
    check_attack_names,
    measure_attack_throughput,
)
from segshield.bench.cuda_graphs import CudaGraphTorchRunner, cuda_graphs_unavailable_reason
from segshield.bench.latency import LatencyStats, bench_engines, measure_latency, runner_on_cuda
from segshield.bench.markdown import (
    attack_throughput_table,
    bench_markdown,
    engines_table,
    latency_table,
)

__all__ = [
    "CudaGraphTorchRunner",
    "LatencyStats",
    "attack_throughput_table",
    "bench_attacks",
    "bench_engines",
    "bench_markdown",
    "check_attack_names",
    "cuda_graphs_unavailable_reason",
    "engines_table",
    "latency_table",
    "measure_attack_throughput",
    "measure_latency",
    "runner_on_cuda",
]
