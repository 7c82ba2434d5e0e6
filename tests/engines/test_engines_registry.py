"""Engine specs are data and backends act on spec fields only; the stage layering holds."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from segshield.engines import (
    CPU_ENGINES,
    DEFAULT_ENGINES,
    ENGINE_SPECS,
    Backend,
    BuildOptions,
    BuildResult,
    EngineRecord,
)
from segshield.engines.backends import get_backend
from segshield.engines.backends.ort import _providers
from segshield.engines.build import BuildContext
from segshield.engines.registry import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    EngineSpec,
    OnnxGraph,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "segshield"


def test_default_engines_are_the_audit_cpu_matrix():
    assert DEFAULT_ENGINES == ("pytorch", "ort-fp32", "ort-fp16", "ort-int8", "aoti-fp32")
    assert set(DEFAULT_ENGINES) <= set(CPU_ENGINES)


def test_every_spec_has_a_backend_and_ort_specs_say_provider_and_graph():
    for spec in ENGINE_SPECS.values():
        backend = get_backend(spec.backend)
        assert isinstance(backend, Backend) and backend.name == spec.backend == spec.kind
        if spec.backend == "onnxruntime":
            assert spec.provider in (CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER)
            assert isinstance(spec.onnx_graph, OnnxGraph)
            assert (spec.device == "cpu") == (spec.provider == CPU_PROVIDER)
        else:
            assert spec.provider is None and spec.onnx_graph is None
    with pytest.raises(KeyError, match="unknown engine backend"):
        get_backend("openvino")


def test_ort_providers_come_from_spec_fields_not_the_name():
    spec = EngineSpec("any-name", "onnxruntime", "int8", "cuda", "", TENSORRT_PROVIDER,
                      OnnxGraph.INT8_QDQ)  # fmt: skip
    record = EngineRecord("any-name", "onnxruntime", "int8", "cuda",
                          details={"input_chw": [1, 8, 8], "input_name": "images"})  # fmt: skip
    providers = _providers(spec, record, BuildOptions(cuda_device=1))
    trt, cuda, cpu = providers
    assert trt[0] == TENSORRT_PROVIDER and cpu == CPU_PROVIDER
    assert cuda == (CUDA_PROVIDER, {"device_id": 1})
    assert trt[1]["trt_int8_enable"] and trt[1]["trt_fp16_enable"]
    assert trt[1]["trt_profile_max_shapes"] == "images:32x1x8x8"
    cuda_spec = dataclasses.replace(spec, provider=CUDA_PROVIDER)
    assert _providers(cuda_spec, record, BuildOptions()) == [
        (CUDA_PROVIDER, {"device_id": 0}),
        CPU_PROVIDER,
    ]


def test_a_renamed_spec_builds_the_same_engine(unet, batch, tmp_path):
    """Backends build from spec fields: a spec under another name gets the same recipe."""
    spec = dataclasses.replace(ENGINE_SPECS["ort-fp32"], name="my-cpu-engine")
    ctx = BuildContext(unet, None, tmp_path, batch, BuildOptions())
    backend = get_backend(spec.backend)
    result = backend.build(ctx, spec)
    assert isinstance(result, BuildResult)
    assert [a.role for a in result.artifacts] == ["onnx", "ort-optimized"]
    assert (tmp_path / "my-cpu-engine" / "model.ort-optimized.onnx").is_file()
    assert result.details["input_chw"] == [3, 32, 32]
    record = EngineRecord(spec.name, spec.backend, spec.precision, spec.device,
                          artifacts=result.artifacts, details=result.details)  # fmt: skip
    runner = backend.load(spec, record, None, BuildOptions())
    assert runner.name == "my-cpu-engine" and runner.providers == [CPU_PROVIDER]
    assert runner.infer(batch).shape == (6, 2, 32, 32)
    assert np.isfinite(runner.infer(batch)).all()


def test_engines_choose_behaviour_by_spec_fields_not_name_prefixes():
    pattern = re.compile(r"name\s*\.\s*startswith|name\s*\[\s*:\s*\d")
    offenders = [
        str(p.relative_to(SRC))
        for p in (SRC / "engines").rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_exporters_do_not_import_engines():
    """exporters come before engines in the pipeline; shared lazy imports live below both."""
    for path in (SRC / "exporters").rglob("*.py"):
        bad = [m for m in _imported_modules(path) if m.startswith("segshield.engines")]
        assert bad == [], (path.name, bad)
    assert not any(m.startswith("segshield.") for m in _imported_modules(SRC / "lazy.py")
                   if m != "segshield.errors")  # fmt: skip
