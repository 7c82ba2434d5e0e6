"""Inference engines behind one `Runner` contract (Polygraphy-style: one runner per backend).

Importing this package does not import onnxruntime, torch._inductor or tensorrt; each is
loaded when an engine that needs it is built or loaded, so segshield works without
onnxruntime-gpu or TensorRT installed.

Layout: `registry` (EngineSpec data: ENGINE_SPECS, DEFAULT_ENGINES), `records` (EngineRecord,
Artifact), `backends` (one Backend per `EngineSpec.backend`: check, build, load), `build`
(`build_engines`), `manifest`, and the runners (`*_runner`, `base.Runner`).

`build_engines(names, model, calibration_images, out_dir, sample=...)` builds the engines
named in `ENGINE_SPECS` (with clean parity against the PyTorch source), `write_manifest`
records them and `runners_from_manifest` loads them again.
"""

from __future__ import annotations

from segshield.engines.aoti_runner import AotiRunner
from segshield.engines.backends import Backend, BuildResult
from segshield.engines.base import Runner, infer_batched
from segshield.engines.build import (
    BuildInfo,
    BuildOptions,
    BuiltEngine,
    build_engine,
    build_engines,
    load_engine,
    model_fingerprint,
)
from segshield.engines.manifest import read_manifest, runners_from_manifest, write_manifest
from segshield.engines.ort_runner import OrtRunner, available_ort_providers
from segshield.engines.parity import parity_stats
from segshield.engines.records import Artifact, EngineBuildRecord, EngineRecord
from segshield.engines.registry import (
    CPU_ENGINES,
    DEFAULT_ENGINES,
    ENGINE_ALIASES,
    ENGINE_SPECS,
    EngineSpec,
    engine_unavailable_reason,
    resolve_engine_names,
)
from segshield.engines.tensorrt_runner import TensorRTRunner
from segshield.engines.torch_runner import TorchRunner

__all__ = [
    "CPU_ENGINES",
    "DEFAULT_ENGINES",
    "ENGINE_ALIASES",
    "ENGINE_SPECS",
    "AotiRunner",
    "Artifact",
    "Backend",
    "BuildInfo",
    "BuildOptions",
    "BuildResult",
    "BuiltEngine",
    "EngineBuildRecord",
    "EngineRecord",
    "EngineSpec",
    "OrtRunner",
    "Runner",
    "TensorRTRunner",
    "TorchRunner",
    "available_ort_providers",
    "build_engine",
    "build_engines",
    "engine_unavailable_reason",
    "infer_batched",
    "load_engine",
    "model_fingerprint",
    "parity_stats",
    "read_manifest",
    "resolve_engine_names",
    "runners_from_manifest",
    "write_manifest",
]
