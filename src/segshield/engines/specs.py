"""Engine specs and builders: what each named engine is, how it is built, how it is loaded.

`build_engines(["pytorch", "ort-fp32", "ort-int8"], model, calib, out_dir, sample=images)`
exports the FP32 ONNX file once, derives every requested engine from it (or from the PyTorch
model for AOTInductor), loads each one through its `Runner`, and measures clean parity against
the FP32 PyTorch source on `sample` (real images). One engine failing never stops the others:
its record says `status="error"` with the message, and engines this machine cannot run (no
GPU, no TensorRT) come back `status="unavailable"` with the reason — never a silent CPU
fallback.

Heavy backends (onnxruntime, torch._inductor, tensorrt) are imported only while building or
loading the engine that needs them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.engines.base import Runner, infer_batched
from segshield.engines.parity import parity_stats
from segshield.errors import DataError, EngineUnavailableError, SegShieldError
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

STATUSES = ("ok", "unavailable", "error")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_PARITY_BATCH = 8


# --------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of the engine builds (all recorded in the manifest).

    opset/export_atol: FP32 ONNX export (see `onnx_from_torch`). threshold: mask threshold
    for parity. calibration_*: static INT8 (method "minmax" | "entropy" | "percentile", images
    per calibration batch, a provenance label such as "bundled:nuclei/train").
    int8_per_channel/int8_preprocess: ORT quantization. aoti_max_batch: largest batch of the
    AOTInductor packages. cuda_device: GPU index for CUDA/TensorRT engines. trt_*: TensorRT
    optimisation profile and workspace; trt_engine_cache: ORT-TensorRT engine cache on disk.
    ort_intra_op_threads: ONNX Runtime intra-op threads (None: ORT's default, all cores).
    """

    opset: int = 18
    export_atol: float = 1e-4
    threshold: float = 0.5
    calibration_method: str = "minmax"
    calibration_batch_size: int = 8
    calibration_source: str | None = None
    int8_per_channel: bool = True
    int8_preprocess: bool = True
    aoti_max_batch: int = 64
    cuda_device: int = 0
    trt_opt_batch: int = 8
    trt_max_batch: int = 32
    trt_workspace_mib: int = 1024
    trt_engine_cache: bool = True
    ort_intra_op_threads: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.calibration_method not in CALIBRATION_METHODS:
            problems.append(
                f"calibration_method must be one of {CALIBRATION_METHODS}, got "
                f"{self.calibration_method!r}"
            )
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        for name in ("calibration_batch_size", "aoti_max_batch", "trt_opt_batch", "trt_max_batch"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.trt_opt_batch > self.trt_max_batch:
            problems.append("trt_opt_batch must be <= trt_max_batch")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildOptions:
        """Rebuild from `to_dict()` output; unknown keys (newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Artifact:
    """A file an engine consists of. `role`: "onnx", "ort-optimized", "pt2", "plan",
    "calibration-cache", "engine-cache" (a folder: sha256 None)."""

    role: str
    path: str
    sha256: str | None
    bytes: int | None = None

    @classmethod
    def of(cls, role: str, path: str | os.PathLike[str]) -> Artifact:
        p = Path(path)
        if p.is_dir():
            return cls(role, str(p), None, None)
        return cls(role, str(p), sha256_file(p), p.stat().st_size)


@dataclass
class EngineBuildRecord:
    """What was built for one engine, and whether it can run here.

    Fields map onto the audit's EngineRecord (name, kind, precision, providers, status,
    reason, artifact/sha256 via `primary`, parity, build_seconds); `notes` are report-ready
    sentences (e.g. what FP16 on a CPU really computes); `details` holds exporter facts the
    loader needs again (input size, batch limits, calibration digest).
    """

    name: str
    kind: str
    precision: str
    device: str
    providers: list[str] = field(default_factory=list)
    status: str = "ok"
    reason: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    build_seconds: float | None = None
    parity: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> Artifact | None:
        """The artifact the runner executes (first one), or None (pytorch, unavailable)."""
        return self.artifacts[0] if self.artifacts else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        primary = self.primary
        data["artifact"] = primary.path if primary else None
        data["sha256"] = primary.sha256 if primary else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineBuildRecord:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["artifacts"] = [Artifact(**a) for a in data.get("artifacts", [])]
        return cls(**kwargs)


@dataclass(frozen=True)
class BuildInfo:
    """Facts shared by all engines of one `build_engines` call (written once in the manifest)."""

    model_class: str
    model_fingerprint: str
    model_parameters: int
    sample: dict[str, Any]
    calibration: dict[str, Any] | None
    options: dict[str, Any]
    onnx_export: dict[str, Any] | None
    out_dir: str
    versions: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuiltEngine:
    """A built engine: its runner (None unless status is "ok") and its record."""

    record: EngineBuildRecord
    runner: Runner | None = None
    info: BuildInfo | None = None

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def ok(self) -> bool:
        return self.record.status == "ok" and self.runner is not None


# ------------------------------------------------------------------------------------ specs


BuildFn = Callable[["_Context", "EngineSpec", EngineBuildRecord], None]
LoadFn = Callable[["EngineSpec", EngineBuildRecord, "nn.Module | None", BuildOptions], Runner]


@dataclass(frozen=True)
class EngineSpec:
    """A named engine: backend `kind`, `precision`, `device` ("cpu" | "cuda") and its recipe.

    `unavailable(spec)` is a cheap check (imports at most the backend) returning why this
    machine cannot run the engine, or None; `build` writes the artifacts into the record;
    `load` turns a record back into a Runner (used after building and by the manifest).
    """

    name: str
    kind: str
    precision: str
    device: str
    summary: str
    unavailable: Callable[[EngineSpec], str | None] = field(repr=False, compare=False)
    build: BuildFn = field(repr=False, compare=False)
    load: LoadFn = field(repr=False, compare=False)
    needs_onnx: bool = True
    needs_calibration: bool = False

    def unavailable_reason(self) -> str | None:
        """Why this engine cannot run on this machine, or None. Builds nothing."""
        return self.unavailable(self)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary, with the reason it is unavailable here (or None)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "precision": self.precision,
            "device": self.device,
            "summary": self.summary,
            "needs_calibration": self.needs_calibration,
            "unavailable_reason": self.unavailable_reason(),
        }


class _Context:
    """State shared by the builds of one call: model, images, options, the FP32 ONNX export."""

    def __init__(
        self,
        model: nn.Module,
        calibration: np.ndarray | None,
        out_dir: Path,
        sample: np.ndarray,
        options: BuildOptions,
    ) -> None:
        self.model = model
        self.calibration = calibration
        self.out_dir = out_dir
        self.sample = sample
        self.options = options
        self.source_logits = _source_logits(model, sample)
        self.onnx_export: Any = None
        self.onnx_error: str | None = None

    def export_onnx(self) -> None:
        """Export the FP32 ONNX file once; later calls reuse it (or its error)."""
        if self.onnx_export is not None or self.onnx_error is not None:
            return
        from segshield.exporters.onnx import onnx_from_torch

        try:
            self.onnx_export = onnx_from_torch(
                self.model,
                torch.from_numpy(self.sample[:2].copy()),
                self.out_dir / "model.onnx",
                opset=self.options.opset,
                atol=self.options.export_atol,
            )
        except SegShieldError as exc:
            self.onnx_error = f"FP32 ONNX export failed: {exc}"
            logger.error(self.onnx_error)

    def onnx_path(self) -> Path:
        self.export_onnx()
        if self.onnx_export is None:
            raise _BuildFailed(self.onnx_error or "FP32 ONNX export failed")
        return Path(self.onnx_export.path)

    def engine_dir(self, name: str) -> Path:
        path = self.out_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


class _BuildFailed(SegShieldError):
    """A build step failed in a way already explained by its message."""


# ---------------------------------------------------------------- availability (cheap checks)


def _always(_: EngineSpec) -> str | None:
    return None


def _ort_cpu(_: EngineSpec) -> str | None:
    return _ort_provider_reason("CPUExecutionProvider")


def _ort_cuda(_: EngineSpec) -> str | None:
    return _ort_provider_reason("CUDAExecutionProvider")


def _ort_trt(_: EngineSpec) -> str | None:
    return _ort_provider_reason("TensorrtExecutionProvider")


def _ort_provider_reason(provider: str) -> str | None:
    from segshield.engines.ort_runner import import_onnxruntime

    try:
        ort = import_onnxruntime()
    except EngineUnavailableError as exc:
        return str(exc)
    available = list(ort.get_available_providers())
    if provider in available:
        return None
    need = {
        "CUDAExecutionProvider": "the onnxruntime-gpu package and an NVIDIA GPU with CUDA",
        "TensorrtExecutionProvider": (
            "onnxruntime-gpu with TensorRT libraries and an NVIDIA GPU with CUDA"
        ),
    }.get(provider, "an onnxruntime build that includes it")
    return (
        f"{provider} is not available in this onnxruntime build (onnxruntime "
        f"{ort.__version__}, providers {available}); it needs {need}"
    )


def _aoti_reason(spec: EngineSpec) -> str | None:
    from segshield.exporters.aoti import aoti_unavailable_reason

    return aoti_unavailable_reason(spec.device, spec.precision)


def _tensorrt_reason(_: EngineSpec) -> str | None:
    from segshield.engines.tensorrt_runner import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


# ------------------------------------------------------------------------------- builders


def _build_pytorch(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    record.notes.append("the FP32 PyTorch source model (the model the attacks are crafted on)")


def _load_pytorch(
    spec: EngineSpec, record: EngineBuildRecord, model: nn.Module | None, options: BuildOptions
) -> Runner:
    from segshield.engines.torch_runner import TorchRunner

    if model is None:
        raise EngineUnavailableError(
            "the pytorch engine is the source model itself; pass model= to load it"
        )
    return TorchRunner(model, "cpu", name=spec.name)


def _ort_session_options(options: BuildOptions, optimized_path: Path | None = None) -> Any:
    from segshield.engines.ort_runner import import_onnxruntime

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


def _ort_providers(spec: EngineSpec, record: EngineBuildRecord, options: BuildOptions) -> list:
    device_id = options.cuda_device
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if spec.name.startswith("ort-trt"):
        cache = next((a.path for a in record.artifacts if a.role == "engine-cache"), None)
        chw = record.details.get("input_chw")
        trt_opts: dict[str, Any] = {
            "device_id": device_id,
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
        return [("TensorrtExecutionProvider", trt_opts), cuda, "CPUExecutionProvider"]
    if spec.device == "cuda":
        return [cuda, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _load_ort(
    spec: EngineSpec, record: EngineBuildRecord, model: nn.Module | None, options: BuildOptions
) -> Runner:
    from segshield.engines.ort_runner import OrtRunner

    primary = record.primary
    if primary is None:
        raise _BuildFailed(f"engine {spec.name} has no ONNX artifact")
    return OrtRunner(
        primary.path,
        providers=_ort_providers(spec, record, options),
        session_options=_ort_session_options(options),
        name=spec.name,
        precision=spec.precision,
    )


def _onnx_facts(ctx: _Context, record: EngineBuildRecord) -> None:
    from segshield.exporters.onnx import INPUT_NAME

    record.details["input_name"] = INPUT_NAME
    record.details["input_chw"] = [int(d) for d in ctx.sample.shape[1:]]
    record.details["source_onnx_sha256"] = ctx.onnx_export.sha256 if ctx.onnx_export else None


def _build_ort_fp32(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    onnx_path = ctx.onnx_path()
    record.artifacts.append(Artifact.of("onnx", onnx_path))
    _onnx_facts(ctx, record)
    if spec.device == "cpu":
        # Save ORT's optimised graph beside the engine, for inspection: building a session
        # with optimized_model_filepath set writes it.
        from segshield.engines.ort_runner import OrtRunner

        optimized = ctx.engine_dir(spec.name) / "model.ort-optimized.onnx"
        OrtRunner(
            onnx_path,
            providers=["CPUExecutionProvider"],
            session_options=_ort_session_options(ctx.options, optimized),
            name=spec.name,
        )
        record.artifacts.append(Artifact.of("ort-optimized", optimized))
        record.notes.append(
            "ONNX Runtime CPU, graph optimisations ORT_ENABLE_ALL applied at load; the "
            f"optimised graph is saved as {optimized.name} for inspection only (at this level "
            "it holds NCHWc layout ops specific to this CPU and onnxruntime version), so the "
            "engine loads model.onnx and re-optimises"
        )
    else:
        _add_ort_gpu_artifacts(ctx, spec, record)


def _add_ort_gpu_artifacts(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    if spec.name.startswith("ort-trt"):
        cache = ctx.engine_dir(spec.name) / "trt_cache"
        cache.mkdir(exist_ok=True)
        record.artifacts.append(Artifact.of("engine-cache", cache))
        record.notes.append(
            "ONNX Runtime TensorRT execution provider (CUDA, then CPU, for nodes TensorRT "
            "does not take); TensorRT engines cached in "
            f"{cache.name}/ (valid for this GPU and TensorRT version only)"
        )
    else:
        record.notes.append("ONNX Runtime CUDA execution provider, ORT_ENABLE_ALL")


def _build_ort_fp16(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    from segshield.exporters.onnx_variants import onnx_fp16_from_onnx, ort_compute_precision

    onnx_path = ctx.onnx_path()
    variant = onnx_fp16_from_onnx(onnx_path, ctx.engine_dir(spec.name) / "model.fp16.onnx")
    record.artifacts.append(Artifact.of("onnx", variant.path))
    _onnx_facts(ctx, record)
    record.details["fp16"] = variant.details
    record.notes.append(
        f"weights and activations converted to float16 with {variant.details['converter']} "
        "(keep_io_types=True: float32 input and output)"
    )
    record.notes.extend(variant.notes)
    if spec.device == "cpu":
        counts = ort_compute_precision(variant.path)
        record.details["cpu_compute_nodes"] = counts
        total = counts["fp16"] + counts["fp32"] + counts["other"]
        record.notes.append(
            "ONNX Runtime's CPU execution provider has FP16 kernels for few ops and computes "
            "the others by casting to FP32, unlike a GPU: after its cast insertion "
            f"{counts['fp16']} of {total} compute nodes run in FP16 and {counts['fp32']} in "
            "FP32, so on CPU this engine measures FP16 rounding of weights (and of tensors at "
            "the casts), not FP16 arithmetic as on CUDA/TensorRT; its CPU latency says nothing "
            "about FP16 speed on a GPU"
        )
    else:
        _add_ort_gpu_artifacts(ctx, spec, record)


def _build_ort_int8(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    from segshield.exporters.onnx_variants import onnx_int8_from_onnx

    if ctx.calibration is None:
        raise _BuildFailed(f"{spec.name} needs calibration images (real images, e.g. train split)")
    onnx_path = ctx.onnx_path()
    trt = spec.name.startswith("ort-trt")
    variant = onnx_int8_from_onnx(
        onnx_path,
        ctx.engine_dir(spec.name) / "model.int8.qdq.onnx",
        ctx.calibration,
        method=ctx.options.calibration_method,  # type: ignore[arg-type]
        per_channel=ctx.options.int8_per_channel,
        preprocess=ctx.options.int8_preprocess,
        symmetric_activations=trt,  # TensorRT's explicit quantization wants symmetric ranges
        calibration_batch_size=ctx.options.calibration_batch_size,
    )
    record.artifacts.append(Artifact.of("onnx", variant.path))
    _onnx_facts(ctx, record)
    record.details["int8"] = variant.details
    record.notes.extend(variant.notes)
    _note_overlap(ctx, record)
    if spec.device == "cpu":
        from segshield.exporters.onnx_variants import ort_executed_ops

        ops = ort_executed_ops(variant.path)
        record.details["cpu_executed_ops"] = ops
        integer = {k: v for k, v in ops.items() if k.startswith("QLinear") or "Integer" in k}
        simulated = {
            k: v
            for k, v in ops.items()
            if k not in integer and k not in {"QuantizeLinear", "DequantizeLinear", "Transpose"}
        }
        record.notes.append(
            "on ONNX Runtime CPU after its QDQ fusions: "
            + (", ".join(f"{v} {k}" for k, v in integer.items()) or "no integer ops")
            + " run in integer arithmetic; "
            + (", ".join(f"{v} {k}" for k, v in simulated.items()) or "nothing")
            + " run in FP32 between DequantizeLinear/QuantizeLinear (int8 rounding of their "
            "inputs/outputs is simulated, the arithmetic is float)"
        )
    else:
        _add_ort_gpu_artifacts(ctx, spec, record)


def _build_ort_int8_dynamic(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    from segshield.exporters.onnx_variants import onnx_int8_dynamic_from_onnx

    onnx_path = ctx.onnx_path()
    variant = onnx_int8_dynamic_from_onnx(
        onnx_path,
        ctx.engine_dir(spec.name) / "model.int8.dynamic.onnx",
        per_channel=ctx.options.int8_per_channel,
        preprocess=ctx.options.int8_preprocess,
    )
    record.artifacts.append(Artifact.of("onnx", variant.path))
    _onnx_facts(ctx, record)
    record.details["int8"] = variant.details
    record.notes.extend(variant.notes)
    record.notes.append("no calibration: activation ranges are measured per batch at run time")


def _note_overlap(ctx: _Context, record: EngineBuildRecord) -> None:
    if ctx.calibration is None:
        return
    calib = {hashlib.sha256(img.tobytes()).digest() for img in ctx.calibration}
    shared = sum(hashlib.sha256(img.tobytes()).digest() in calib for img in ctx.sample)
    record.details["parity_images_in_calibration"] = int(shared)
    if shared:
        record.notes.append(
            f"{shared} of {len(ctx.sample)} parity images are also calibration images: "
            "parity is optimistic; calibrate on the training split, measure on the test split"
        )


def _build_aoti(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    from segshield.exporters.aoti import aoti_from_torch, cxx_compiler

    device = "cpu" if spec.device == "cpu" else f"cuda:{ctx.options.cuda_device}"
    export = aoti_from_torch(
        ctx.model,
        torch.from_numpy(ctx.sample[:2].copy()),
        ctx.engine_dir(spec.name) / "model.pt2",
        device=device,
        precision=spec.precision,
        max_batch=ctx.options.aoti_max_batch,
    )
    record.artifacts.append(Artifact.of("pt2", export.path))
    record.details |= {
        "input_chw": list(export.input_chw),
        "max_batch": export.max_batch,
        "export_seconds": round(export.export_seconds, 3),
        "compile_seconds": round(export.compile_seconds, 3),
        "torch_version": export.torch_version,
    }
    compiler = f" with {cxx_compiler()}" if spec.device == "cpu" else ""
    record.notes.append(
        f"AOTInductor: torch.export (dynamic batch 1..{export.max_batch}) then "
        f"aoti_compile_and_package{compiler}: export {export.export_seconds:.1f} s, compile "
        f"{export.compile_seconds:.1f} s (Inductor's on-disk cache, TORCHINDUCTOR_CACHE_DIR, "
        "can make a rebuild faster than a cold compile)"
    )
    record.notes.append("a .pt2 holds a compiled shared library: only load packages you built")


def _load_aoti(
    spec: EngineSpec, record: EngineBuildRecord, model: nn.Module | None, options: BuildOptions
) -> Runner:
    from segshield.engines.aoti_runner import AotiRunner

    primary = record.primary
    if primary is None:
        raise _BuildFailed(f"engine {spec.name} has no .pt2 artifact")
    chw = record.details.get("input_chw")
    return AotiRunner(
        primary.path,
        device="cpu" if spec.device == "cpu" else f"cuda:{options.cuda_device}",
        precision=spec.precision,
        input_chw=tuple(chw) if chw else None,
        max_batch=int(record.details.get("max_batch", options.aoti_max_batch)),
        name=spec.name,
    )


def _build_tensorrt(ctx: _Context, spec: EngineSpec, record: EngineBuildRecord) -> None:
    from segshield.exporters.tensorrt import tensorrt_engine_from_onnx

    if spec.precision == "int8" and ctx.calibration is None:
        raise _BuildFailed(f"{spec.name} needs calibration images (real images, e.g. train split)")
    folder = ctx.engine_dir(spec.name)
    with torch.cuda.device(ctx.options.cuda_device):
        built = tensorrt_engine_from_onnx(
            ctx.onnx_path(),
            folder / "model.plan",
            precision=spec.precision,
            calibration_images=ctx.calibration if spec.precision == "int8" else None,
            opt_batch=ctx.options.trt_opt_batch,
            max_batch=ctx.options.trt_max_batch,
            workspace_mib=ctx.options.trt_workspace_mib,
        )
    record.artifacts.append(Artifact.of("plan", built.path))
    record.details |= {"tensorrt": built.to_dict()}
    if built.calibration:
        cache = Path(built.calibration["cache"])
        if cache.is_file():
            record.artifacts.append(Artifact.of("calibration-cache", cache))
        _note_overlap(ctx, record)
    record.notes.append(
        f"native TensorRT {built.tensorrt_version} engine, profile batch 1/{built.opt_batch}/"
        f"{built.max_batch}; valid only for this GPU model and TensorRT version"
        + (
            "; INT8 via IInt8EntropyCalibrator2 on the calibration images"
            if built.calibration
            else ""
        )
    )


def _load_tensorrt(
    spec: EngineSpec, record: EngineBuildRecord, model: nn.Module | None, options: BuildOptions
) -> Runner:
    from segshield.engines.tensorrt_runner import TensorRTRunner

    primary = record.primary
    if primary is None:
        raise _BuildFailed(f"engine {spec.name} has no .plan artifact")
    return TensorRTRunner(
        primary.path,
        precision=spec.precision,
        device=f"cuda:{options.cuda_device}",
        name=spec.name,
    )


def _spec(
    name: str,
    kind: str,
    precision: str,
    device: str,
    summary: str,
    unavailable: Callable[[EngineSpec], str | None],
    build: BuildFn,
    load: LoadFn,
    **flags: bool,
) -> EngineSpec:
    return EngineSpec(name, kind, precision, device, summary, unavailable, build, load, **flags)


ENGINE_SPECS: dict[str, EngineSpec] = {
    s.name: s
    for s in (
        _spec("pytorch", "pytorch", "fp32", "cpu", "FP32 PyTorch source model (eager, CPU)",
              _always, _build_pytorch, _load_pytorch, needs_onnx=False),
        _spec("ort-fp32", "onnxruntime", "fp32", "cpu",
              "ONNX Runtime CPU, FP32, ORT_ENABLE_ALL", _ort_cpu, _build_ort_fp32, _load_ort),
        _spec("ort-fp16", "onnxruntime", "fp16", "cpu",
              "ONNX Runtime CPU, FP16 graph with FP32 IO", _ort_cpu, _build_ort_fp16, _load_ort),
        _spec("ort-int8", "onnxruntime", "int8", "cpu",
              "ONNX Runtime CPU, static QDQ INT8 calibrated on real images",
              _ort_cpu, _build_ort_int8, _load_ort, needs_calibration=True),
        _spec("ort-int8-dynamic", "onnxruntime", "int8", "cpu",
              "ONNX Runtime CPU, dynamic INT8 (weights int8, activations at run time)",
              _ort_cpu, _build_ort_int8_dynamic, _load_ort),
        _spec("aoti-fp32", "aoti", "fp32", "cpu", "AOTInductor .pt2, CPU FP32 (C++ kernels)",
              _aoti_reason, _build_aoti, _load_aoti, needs_onnx=False),
        _spec("aoti-cuda-fp32", "aoti", "fp32", "cuda", "AOTInductor .pt2, CUDA FP32",
              _aoti_reason, _build_aoti, _load_aoti, needs_onnx=False),
        _spec("aoti-cuda-fp16", "aoti", "fp16", "cuda", "AOTInductor .pt2, CUDA FP16",
              _aoti_reason, _build_aoti, _load_aoti, needs_onnx=False),
        _spec("aoti-cuda-bf16", "aoti", "bf16", "cuda", "AOTInductor .pt2, CUDA BF16",
              _aoti_reason, _build_aoti, _load_aoti, needs_onnx=False),
        _spec("ort-cuda", "onnxruntime", "fp32", "cuda", "ONNX Runtime CUDA EP, FP32",
              _ort_cuda, _build_ort_fp32, _load_ort),
        _spec("ort-cuda-fp16", "onnxruntime", "fp16", "cuda",
              "ONNX Runtime CUDA EP, FP16 graph with FP32 IO", _ort_cuda, _build_ort_fp16,
              _load_ort),
        _spec("ort-trt", "onnxruntime", "fp32", "cuda", "ONNX Runtime TensorRT EP, FP32",
              _ort_trt, _build_ort_fp32, _load_ort),
        _spec("ort-trt-fp16", "onnxruntime", "fp16", "cuda",
              "ONNX Runtime TensorRT EP, trt_fp16_enable", _ort_trt, _build_ort_fp32, _load_ort),
        _spec("ort-trt-int8", "onnxruntime", "int8", "cuda",
              "ONNX Runtime TensorRT EP, symmetric QDQ INT8 model calibrated on real images",
              _ort_trt, _build_ort_int8, _load_ort, needs_calibration=True),
        _spec("tensorrt-fp32", "tensorrt", "fp32", "cuda", "native TensorRT engine, FP32",
              _tensorrt_reason, _build_tensorrt, _load_tensorrt),
        _spec("tensorrt-fp16", "tensorrt", "fp16", "cuda", "native TensorRT engine, FP16",
              _tensorrt_reason, _build_tensorrt, _load_tensorrt),
        _spec("tensorrt-int8", "tensorrt", "int8", "cuda",
              "native TensorRT engine, INT8 with IInt8EntropyCalibrator2 on real images",
              _tensorrt_reason, _build_tensorrt, _load_tensorrt, needs_calibration=True),
    )
}  # fmt: skip

# Names the audit config used before engine specs existed.
ENGINE_ALIASES: dict[str, str] = {"onnxruntime": "ort-fp32", "onnxruntime-cuda": "ort-cuda"}
CPU_ENGINES: tuple[str, ...] = tuple(n for n, s in ENGINE_SPECS.items() if s.device == "cpu")
DEFAULT_ENGINES: tuple[str, ...] = ("pytorch", "ort-fp32", "ort-fp16", "ort-int8")


def resolve_engine_names(names: Iterable[str]) -> list[str]:
    """Canonical engine names in order, aliases resolved, duplicates dropped.

    Raises ValueError naming the valid engines for an unknown name.
    """
    out: list[str] = []
    for raw in names:
        key = ENGINE_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if key not in ENGINE_SPECS:
            raise ValueError(
                f"unknown engine {raw!r}; valid engines: {', '.join(ENGINE_SPECS)} "
                f"(aliases: {', '.join(f'{a}={b}' for a, b in ENGINE_ALIASES.items())})"
            )
        if key not in out:
            out.append(key)
    return out


def engine_unavailable_reason(name: str) -> str | None:
    """Why engine `name` cannot run on this machine, or None. Builds nothing."""
    return ENGINE_SPECS[resolve_engine_names([name])[0]].unavailable_reason()


# ------------------------------------------------------------------------------ build API


def build_engine(
    name: str,
    model: nn.Module,
    calibration_images: np.ndarray | None,
    out_dir: str | os.PathLike[str],
    *,
    sample: np.ndarray,
    options: BuildOptions | None = None,
) -> BuiltEngine:
    """Build one engine; see `build_engines`. Never raises for the engine failing."""
    return build_engines(
        [name], model, calibration_images, out_dir, sample=sample, options=options
    )[0]


def build_engines(
    names: Sequence[str],
    model: nn.Module,
    calibration_images: np.ndarray | None,
    out_dir: str | os.PathLike[str],
    *,
    sample: np.ndarray,
    options: BuildOptions | None = None,
) -> list[BuiltEngine]:
    """Build the named engines into `out_dir`; one record per engine, in order.

    Args:
        names: engine names from ENGINE_SPECS (aliases in ENGINE_ALIASES accepted).
        model: the FP32 PyTorch source model, float32 (N,C,H,W) in [0,1] -> (N,K,H,W) logits.
            Put in eval mode; not moved.
        calibration_images: real float32 (N,C,H,W) images in [0,1] for INT8 calibration (the
            audit dataset's training split — never random noise); None if no INT8 engine.
        out_dir: folder for model.onnx (exported once, shared) and one sub-folder per engine.
        sample: real float32 (N,C,H,W) images (e.g. the audit's test images) for the clean
            parity of every engine against the source (`parity_stats`); its first two images
            are also the ONNX export example.
        options: BuildOptions.

    Returns one BuiltEngine per name with status "ok" (runner loaded, parity measured),
    "unavailable" (this machine cannot run it; reason says why) or "error" (message).

    Raises:
        ValueError: unknown engine name. DataError: `sample`/`calibration_images` are not
            real-image batches of the same (C,H,W) in [0,1].
    """
    from segshield.exporters.onnx_variants import check_calibration_images, images_digest

    options = options or BuildOptions()
    resolved = resolve_engine_names(names)
    sample_arr = _check_sample(sample)
    calib = None
    if calibration_images is not None:
        calib = check_calibration_images(calibration_images, tuple(sample_arr.shape[1:]))
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    ctx = _Context(model, calib, out, sample_arr, options)

    specs = [ENGINE_SPECS[n] for n in resolved]
    reasons = {s.name: s.unavailable_reason() for s in specs}
    if any(s.needs_onnx and reasons[s.name] is None for s in specs):
        ctx.export_onnx()  # once, before the per-engine timers start

    info = BuildInfo(
        model_class=type(model).__name__,
        model_fingerprint=model_fingerprint(model),
        model_parameters=int(sum(p.numel() for p in model.parameters())),
        sample={"n_images": len(sample_arr), "shape": list(sample_arr.shape),
                "sha256": images_digest(sample_arr)},
        calibration=None if calib is None else {
            "n_images": len(calib), "shape": list(calib.shape), "sha256": images_digest(calib),
            "method": options.calibration_method, "source": options.calibration_source,
        },
        options=options.to_dict(),
        onnx_export=ctx.onnx_export.to_dict() if ctx.onnx_export is not None else (
            {"error": ctx.onnx_error} if ctx.onnx_error else None),
        out_dir=str(out),
        versions=_versions(),
    )  # fmt: skip
    return [_build_one(ctx, spec, reasons[spec.name], info) for spec in specs]


def _build_one(ctx: _Context, spec: EngineSpec, reason: str | None, info: BuildInfo) -> BuiltEngine:
    record = EngineBuildRecord(spec.name, spec.kind, spec.precision, spec.device)
    if reason is not None:
        record.status, record.reason = "unavailable", reason
        logger.info("engine %s unavailable: %s", spec.name, reason)
        return BuiltEngine(record, None, info)
    start = time.perf_counter()
    runner: Runner | None = None
    try:
        spec.build(ctx, spec, record)
        runner = spec.load(spec, record, ctx.model, ctx.options)
        record.build_seconds = round(time.perf_counter() - start, 3)
        record.providers = list(runner.providers)
        logits = infer_batched(runner, ctx.sample, _PARITY_BATCH)
        record.parity = parity_stats(ctx.source_logits, logits, ctx.options.threshold)
    except EngineUnavailableError as exc:
        record.status, record.reason, runner = "unavailable", str(exc), None
        logger.warning("engine %s unavailable: %s", spec.name, exc)
    except Exception as exc:  # one engine failing must not lose the others
        message = str(exc) if isinstance(exc, _BuildFailed) else f"{type(exc).__name__}: {exc}"
        record.status, record.reason, runner = "error", message, None
        logger.error("engine %s failed: %s", spec.name, record.reason)
        logger.debug("engine %s traceback", spec.name, exc_info=True)
    if record.build_seconds is None:
        record.build_seconds = round(time.perf_counter() - start, 3)
    return BuiltEngine(record, runner, info)


def load_engine(
    record: EngineBuildRecord, model: nn.Module | None, options: BuildOptions | None = None
) -> Runner:
    """Load the runner of a built engine from its record (artifact paths must be absolute)."""
    spec = ENGINE_SPECS[resolve_engine_names([record.name])[0]]
    reason = spec.unavailable_reason()
    if reason:
        raise EngineUnavailableError(reason)
    return spec.load(spec, record, model, options or BuildOptions())


# --------------------------------------------------------------------------------- helpers


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's state dict (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_sample(sample: object) -> np.ndarray:
    if not isinstance(sample, np.ndarray) or sample.ndim != 4 or sample.shape[0] == 0:
        shape = getattr(sample, "shape", type(sample).__name__)
        raise DataError(f"sample must be a non-empty image array (N,C,H,W), got {shape}")
    if not np.issubdtype(sample.dtype, np.floating):
        raise DataError(f"sample must be float images in [0,1], got dtype {sample.dtype}")
    arr = np.ascontiguousarray(sample, dtype=np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise DataError("sample must be finite images in [0,1]")
    return arr


def _source_logits(model: nn.Module, sample: np.ndarray) -> np.ndarray:
    """FP32 logits of the source model on `sample`, on the model's own device."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(sample), _PARITY_BATCH):
            x = torch.from_numpy(sample[start : start + _PARITY_BATCH]).to(device)
            chunks.append(model(x).float().cpu().numpy())
    return np.concatenate(chunks)


def _versions() -> dict[str, Any]:
    import platform
    import sys

    import segshield

    versions: dict[str, Any] = {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_threads": os.cpu_count(),
    }
    for module in ("onnxruntime", "onnx"):
        try:
            versions[module] = str(__import__(module).__version__)
        except ImportError:
            versions[module] = None
    return versions


__all__ = [
    "CALIBRATION_METHODS",
    "CPU_ENGINES",
    "DEFAULT_ENGINES",
    "ENGINE_ALIASES",
    "ENGINE_SPECS",
    "STATUSES",
    "Artifact",
    "BuildInfo",
    "BuildOptions",
    "BuiltEngine",
    "EngineBuildRecord",
    "EngineSpec",
    "build_engine",
    "build_engines",
    "engine_unavailable_reason",
    "load_engine",
    "model_fingerprint",
    "resolve_engine_names",
]
