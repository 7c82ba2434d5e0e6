"""The "onnxruntime" backend: every ONNX Runtime engine, CPU, CUDA EP and TensorRT EP.

What is built comes from `spec.onnx_graph` (which graph is derived from the FP32 export) and
`spec.provider` (which execution provider runs it, and which provider-specific facts are
recorded). onnxruntime is imported only when a check, build or load needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segshield.engines.backends import (
    BuildFailed,
    BuildResult,
    add_calibration_overlap,
    primary_path,
)
from segshield.engines.records import Artifact
from segshield.engines.registry import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER, OnnxGraph
from segshield.errors import EngineUnavailableError
from segshield.lazy import import_onnxruntime

if TYPE_CHECKING:
    from torch import nn

    from segshield.engines.base import Runner
    from segshield.engines.build import BuildContext, BuildOptions
    from segshield.engines.records import EngineRecord
    from segshield.engines.registry import EngineSpec

# What a missing provider needs, for the unavailable reason.
_PROVIDER_NEEDS = {
    CUDA_PROVIDER: "the onnxruntime-gpu package and an NVIDIA GPU with CUDA",
    TENSORRT_PROVIDER: "onnxruntime-gpu with TensorRT libraries and an NVIDIA GPU with CUDA",
}

GraphStep = Callable[["BuildContext", "EngineSpec"], BuildResult]
FactStep = Callable[["BuildContext", "EngineSpec", BuildResult], None]


def provider_unavailable_reason(provider: str) -> str | None:
    """Why ONNX Runtime's `provider` cannot run here (onnxruntime missing, provider not in
    this build), or None."""
    try:
        ort = import_onnxruntime()
    except EngineUnavailableError as exc:
        return str(exc)
    available = list(ort.get_available_providers())
    if provider in available:
        return None
    need = _PROVIDER_NEEDS.get(provider, "an onnxruntime build that includes it")
    return (
        f"{provider} is not available in this onnxruntime build (onnxruntime "
        f"{ort.__version__}, providers {available}); it needs {need}"
    )


def session_options(options: BuildOptions, optimized_path: Path | None = None) -> Any:
    """An `onnxruntime.SessionOptions` at ORT_ENABLE_ALL; with `optimized_path`, ORT writes
    its optimised graph there when a session is created."""
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if options.ort_intra_op_threads:
        so.intra_op_num_threads = options.ort_intra_op_threads
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
        # ORT warns that an ORT_ENABLE_ALL graph is hardware specific; the record's note says so.
        so.log_severity_level = 3
    return so


def _provider(spec: EngineSpec) -> str:
    return spec.provider or CPU_PROVIDER


def _providers(spec: EngineSpec, record: EngineRecord, options: BuildOptions) -> list[Any]:
    """The provider list for the session, in priority order, with their options."""
    provider = _provider(spec)
    cuda = (CUDA_PROVIDER, {"device_id": options.cuda_device})
    if provider == TENSORRT_PROVIDER:
        return [(TENSORRT_PROVIDER, _trt_options(spec, record, options)), cuda, CPU_PROVIDER]
    if provider == CUDA_PROVIDER:
        return [cuda, CPU_PROVIDER]
    return [CPU_PROVIDER]


def _trt_options(spec: EngineSpec, record: EngineRecord, options: BuildOptions) -> dict[str, Any]:
    """TensorRT EP options: precision flags from spec.precision, engine cache, batch profile."""
    cache = next((a.path for a in record.artifacts if a.role == "engine-cache"), None)
    chw = record.details.get("input_chw")
    trt_opts: dict[str, Any] = {
        "device_id": options.cuda_device,
        # INT8 engines also allow FP16 for the layers TensorRT keeps in float.
        "trt_fp16_enable": spec.precision in ("fp16", "int8"),
        "trt_int8_enable": spec.precision == "int8",
        "trt_max_workspace_size": options.trt_workspace_mib << 20,
    }
    if cache and options.trt_engine_cache:
        trt_opts |= {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
        }
    if chw:
        shape = "x".join(str(d) for d in chw)
        name = record.details.get("input_name", "images")
        trt_opts |= {
            "trt_profile_min_shapes": f"{name}:1x{shape}",
            "trt_profile_opt_shapes": f"{name}:{options.trt_opt_batch}x{shape}",
            "trt_profile_max_shapes": f"{name}:{options.trt_max_batch}x{shape}",
        }
    return trt_opts


# ------------------------------------------------------------------------ graphs (by spec)


def _onnx_facts(ctx: BuildContext) -> dict[str, Any]:
    from segshield.exporters.onnx import INPUT_NAME

    return {
        "input_name": INPUT_NAME,
        "input_chw": [int(d) for d in ctx.sample.shape[1:]],
        "source_onnx_sha256": ctx.onnx_export.sha256 if ctx.onnx_export else None,
    }


def _graph_fp32(ctx: BuildContext, spec: EngineSpec) -> BuildResult:
    return BuildResult([Artifact.of("onnx", ctx.onnx_path())], details=_onnx_facts(ctx))


def _graph_fp16(ctx: BuildContext, spec: EngineSpec) -> BuildResult:
    from segshield.exporters.onnx_fp16 import onnx_fp16_from_onnx

    out = ctx.engine_dir(spec.name) / "model.fp16.onnx"
    variant = onnx_fp16_from_onnx(ctx.onnx_path(), out)
    return BuildResult(
        [Artifact.of("onnx", variant.path)],
        notes=[
            f"weights and activations converted to float16 with {variant.details['converter']} "
            "(keep_io_types=True: float32 input and output)",
            *variant.notes,
        ],
        details={**_onnx_facts(ctx), "fp16": variant.details},
    )


def _graph_int8_qdq(ctx: BuildContext, spec: EngineSpec) -> BuildResult:
    from segshield.exporters.onnx_int8 import onnx_int8_from_onnx

    if ctx.calibration is None:
        raise BuildFailed(f"{spec.name} needs calibration images (real images, e.g. train split)")
    onnx_path = ctx.onnx_path()
    dst = ctx.engine_dir(spec.name) / "model.int8.qdq.onnx"
    variant = onnx_int8_from_onnx(
        onnx_path,
        dst,
        ctx.calibration,
        method=ctx.options.calibration_method,  # type: ignore[arg-type]
        per_channel=ctx.options.int8_per_channel,
        preprocess=ctx.options.int8_preprocess,
        # TensorRT's explicit quantization wants symmetric activation ranges.
        symmetric_activations=_provider(spec) == TENSORRT_PROVIDER,
        calibration_batch_size=ctx.options.calibration_batch_size,
    )
    search_notes: list[str] = []
    search: dict[str, Any] | None = None
    if ctx.options.int8_search == "auto" and _provider(spec) == CPU_PROVIDER:
        found = _int8_recipe_search(ctx, onnx_path, dst, variant)
        variant, search = found.variant, found.to_dict()
        search_notes = [found.note()]
    result = BuildResult(
        [Artifact.of("onnx", variant.path)],
        notes=[*search_notes, *variant.notes],
        details={**_onnx_facts(ctx), "int8": variant.details},
    )
    if search is not None:
        result.details["int8_search"] = search
    add_calibration_overlap(ctx, result)
    return result


def _int8_recipe_search(ctx: BuildContext, onnx_path: Path, dst: Path, first: Any) -> Any:
    """Score the default static INT8 recipe (`first`, built at `dst`) on the calibration
    images and, when it is not healthy there, search the standard mitigations
    (`segshield.exporters.int8_search`); returns its `SearchResult`. Only calibration images
    are used: the audited images never choose the recipe."""
    from segshield.engines.parity import parity_stats
    from segshield.engines.sample_parity import source_logits
    from segshield.exporters.int8_search import Recipe, search_int8

    options = ctx.options
    assert ctx.calibration is not None

    def agreement(source: Any, engine: Any) -> float:
        stats = parity_stats(source, engine, options.threshold, options.activation)
        return float(stats["mask_dice"])

    return search_int8(
        onnx_path,
        dst,
        ctx.calibration,
        source_logits(ctx.model, ctx.calibration),
        agreement=agreement,
        thresholds=options.health(),
        base=Recipe(options.int8_per_channel, options.calibration_method),  # type: ignore[arg-type]
        first=first,
        preprocess=options.int8_preprocess,
        calibration_batch_size=options.calibration_batch_size,
        intra_op_threads=options.ort_intra_op_threads,
    )


def _graph_int8_dynamic(ctx: BuildContext, spec: EngineSpec) -> BuildResult:
    from segshield.exporters.onnx_int8 import onnx_int8_dynamic_from_onnx

    variant = onnx_int8_dynamic_from_onnx(
        ctx.onnx_path(),
        ctx.engine_dir(spec.name) / "model.int8.dynamic.onnx",
        per_channel=ctx.options.int8_per_channel,
        preprocess=ctx.options.int8_preprocess,
    )
    return BuildResult(
        [Artifact.of("onnx", variant.path)],
        notes=[
            *variant.notes,
            "no calibration: activation ranges are measured per batch at run time",
        ],
        details={**_onnx_facts(ctx), "int8": variant.details},
    )


_GRAPHS: dict[OnnxGraph, GraphStep] = {
    OnnxGraph.FP32: _graph_fp32,
    OnnxGraph.FP16: _graph_fp16,
    OnnxGraph.INT8_QDQ: _graph_int8_qdq,
    OnnxGraph.INT8_DYNAMIC: _graph_int8_dynamic,
}


# ------------------------------------------------------ what the CPU EP really computes


def _cpu_fp32_facts(ctx: BuildContext, spec: EngineSpec, result: BuildResult) -> None:
    """Save ORT's optimised graph beside the engine, for inspection: creating a session with
    optimized_model_filepath set writes it."""
    from segshield.engines.ort_runner import OrtRunner
    from segshield.exporters.reproducible import stabilize_ort_optimized

    optimized = ctx.engine_dir(spec.name) / "model.ort-optimized.onnx"
    OrtRunner(
        result.artifacts[0].path,
        providers=[CPU_PROVIDER],
        session_options=session_options(ctx.options, optimized),
        name=spec.name,
    )
    stabilize_ort_optimized(optimized, result.artifacts[0].path)  # reproducible bytes
    result.artifacts.append(Artifact.of("ort-optimized", optimized))
    result.notes.append(
        "ONNX Runtime CPU, graph optimisations ORT_ENABLE_ALL applied at load; the "
        f"optimised graph is saved as {optimized.name} for inspection only (at this level "
        "it holds NCHWc layout ops specific to this CPU and onnxruntime version), so the "
        "engine loads model.onnx and re-optimises"
    )


def _cpu_fp16_facts(ctx: BuildContext, spec: EngineSpec, result: BuildResult) -> None:
    from segshield.exporters.onnx_graph import ort_compute_precision

    counts = ort_compute_precision(result.artifacts[0].path)
    result.details["cpu_compute_nodes"] = counts
    total = counts["fp16"] + counts["fp32"] + counts["other"]
    result.notes.append(
        "ONNX Runtime's CPU execution provider has FP16 kernels for few ops and computes "
        "the others by casting to FP32, unlike a GPU: after its cast insertion "
        f"{counts['fp16']} of {total} compute nodes run in FP16 and {counts['fp32']} in "
        "FP32, so on CPU this engine measures FP16 rounding of weights (and of tensors at "
        "the casts), not FP16 arithmetic as on CUDA/TensorRT; its CPU latency says nothing "
        "about FP16 speed on a GPU"
    )


def _cpu_int8_facts(ctx: BuildContext, spec: EngineSpec, result: BuildResult) -> None:
    from segshield.exporters.onnx_graph import ort_executed_ops

    ops = ort_executed_ops(result.artifacts[0].path)
    result.details["cpu_executed_ops"] = ops
    integer = {k: v for k, v in ops.items() if k.startswith("QLinear") or "Integer" in k}
    simulated = {
        k: v
        for k, v in ops.items()
        if k not in integer and k not in {"QuantizeLinear", "DequantizeLinear", "Transpose"}
    }
    result.notes.append(
        "on ONNX Runtime CPU after its QDQ fusions: "
        + (", ".join(f"{v} {k}" for k, v in integer.items()) or "no integer ops")
        + " run in integer arithmetic; "
        + (", ".join(f"{v} {k}" for k, v in simulated.items()) or "nothing")
        + " run in FP32 between DequantizeLinear/QuantizeLinear (int8 rounding of their "
        "inputs/outputs is simulated, the arithmetic is float)"
    )


_CPU_FACTS: dict[OnnxGraph, FactStep] = {
    OnnxGraph.FP32: _cpu_fp32_facts,
    OnnxGraph.FP16: _cpu_fp16_facts,
    OnnxGraph.INT8_QDQ: _cpu_int8_facts,
}


def _gpu_facts(ctx: BuildContext, spec: EngineSpec, result: BuildResult) -> None:
    """The TensorRT EP's engine cache folder, or the CUDA EP note."""
    if _provider(spec) == TENSORRT_PROVIDER:
        cache = ctx.engine_dir(spec.name) / "trt_cache"
        cache.mkdir(exist_ok=True)
        result.artifacts.append(Artifact.of("engine-cache", cache))
        result.notes.append(
            "ONNX Runtime TensorRT execution provider (CUDA, then CPU, for nodes TensorRT "
            "does not take); TensorRT engines cached in "
            f"{cache.name}/ (valid for this GPU and TensorRT version only)"
        )
    else:
        result.notes.append("ONNX Runtime CUDA execution provider, ORT_ENABLE_ALL")


# ------------------------------------------------------------------------------- backend


class OrtBackend:
    """ONNX Runtime engines; see the module docstring."""

    name = "onnxruntime"

    def available(self, spec: EngineSpec) -> str | None:
        return provider_unavailable_reason(_provider(spec))

    def build(self, ctx: BuildContext, spec: EngineSpec) -> BuildResult:
        graph = OnnxGraph(spec.onnx_graph or OnnxGraph.FP32)
        result = _GRAPHS[graph](ctx, spec)
        if _provider(spec) == CPU_PROVIDER:
            facts = _CPU_FACTS.get(graph)
            if facts is not None:
                facts(ctx, spec, result)
        else:
            _gpu_facts(ctx, spec, result)
        return result

    def load(
        self,
        spec: EngineSpec,
        record: EngineRecord,
        model: nn.Module | None,
        options: BuildOptions,
    ) -> Runner:
        from segshield.engines.ort_runner import OrtRunner

        path = primary_path(spec, record, "ONNX")
        return OrtRunner(
            path,
            providers=_providers(spec, record, options),
            session_options=session_options(options),
            name=spec.name,
            precision=spec.precision,
        )


BACKEND = OrtBackend()

__all__ = ["BACKEND", "OrtBackend", "provider_unavailable_reason", "session_options"]
