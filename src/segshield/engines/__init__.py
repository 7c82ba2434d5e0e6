"""Inference engines behind one `Runner` contract (Polygraphy-style: one runner per backend).

Importing this package imports nothing heavy: names load on first use (PEP 562), so the
report readers reach `EngineRecord` without torch, and onnxruntime, torch._inductor or
tensorrt load only when an engine that needs them is built or loaded.

Layout: `registry` (EngineSpec data: ENGINE_SPECS, DEFAULT_ENGINES), `records` (EngineRecord,
Artifact), `backends` (one Backend per `EngineSpec.backend`: check, build, load), `build`
(`build_engines`), `manifest`, and the runners (`*_runner`, `base.Runner`).

`build_engines(names, model, calibration_images, out_dir, sample=...)` builds the engines
named in `ENGINE_SPECS` (with clean parity against the PyTorch source), `write_manifest`
records them and `runners_from_manifest` loads them again. `engine_from_file` (`external`)
loads an engine built outside segshield (an ONNX file, a TensorRT plan), checked against the
audited images.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AotiRunner": "segshield.engines.aoti_runner",
    "Artifact": "segshield.engines.records",
    "Backend": "segshield.engines.backends",
    "BuildInfo": "segshield.engines.build",
    "BuildOptions": "segshield.engines.build",
    "BuildResult": "segshield.engines.backends",
    "BuiltEngine": "segshield.engines.build",
    "CPU_ENGINES": "segshield.engines.registry",
    "DEFAULT_ENGINES": "segshield.engines.registry",
    "ENGINE_ALIASES": "segshield.engines.registry",
    "ENGINE_SPECS": "segshield.engines.registry",
    "EngineBuildRecord": "segshield.engines.records",
    "EngineRecord": "segshield.engines.records",
    "EngineSpec": "segshield.engines.registry",
    "ExpectedIO": "segshield.engines.external",
    "OrtRunner": "segshield.engines.ort_runner",
    "Runner": "segshield.engines.base",
    "TensorRTRunner": "segshield.engines.tensorrt_runner",
    "TorchRunner": "segshield.engines.torch_runner",
    "available_ort_providers": "segshield.engines.ort_runner",
    "build_engine": "segshield.engines.build",
    "build_engines": "segshield.engines.build",
    "engine_from_file": "segshield.engines.external",
    "engine_unavailable_reason": "segshield.engines.registry",
    "infer_batched": "segshield.engines.base",
    "load_engine": "segshield.engines.build",
    "model_fingerprint": "segshield.engines.build",
    "onnx_engine_from_file": "segshield.engines.external",
    "parity_stats": "segshield.engines.parity",
    "read_manifest": "segshield.engines.manifest",
    "remeasure_parity": "segshield.engines.sample_parity",
    "resolve_engine_names": "segshield.engines.registry",
    "runners_from_manifest": "segshield.engines.manifest",
    "trt_engine_from_file": "segshield.engines.external",
    "write_manifest": "segshield.engines.manifest",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segshield.engines' has no attribute {name!r}")


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
    "ExpectedIO",
    "OrtRunner",
    "Runner",
    "TensorRTRunner",
    "TorchRunner",
    "available_ort_providers",
    "build_engine",
    "build_engines",
    "engine_from_file",
    "engine_unavailable_reason",
    "infer_batched",
    "load_engine",
    "model_fingerprint",
    "onnx_engine_from_file",
    "parity_stats",
    "read_manifest",
    "remeasure_parity",
    "resolve_engine_names",
    "runners_from_manifest",
    "trt_engine_from_file",
    "write_manifest",
]
