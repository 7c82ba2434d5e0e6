"""The named engines segshield can build, as pure data.

An `EngineSpec` says what an engine is (backend, precision, device, ONNX Runtime execution
provider, which ONNX graph it consumes); the backend named by `spec.backend` (see
`segshield.engines.backends`) decides how to check, build and load it from those fields
alone. Nothing here imports a heavy backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from segshield.enums import StrEnum

# ONNX Runtime execution providers the ORT engines request.
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"


class OnnxGraph(StrEnum):
    """Which ONNX graph an ONNX Runtime engine runs, derived from the one FP32 export."""

    FP32 = "fp32"  # the verified FP32 export itself
    FP16 = "fp16"  # float16 weights/activations, float32 IO
    INT8_QDQ = "int8-qdq"  # static QDQ INT8 calibrated on real images
    INT8_DYNAMIC = "int8-dynamic"  # dynamic INT8: int8 weights, activation ranges at run time


@dataclass(frozen=True)
class EngineSpec:
    """A named engine.

    backend: "pytorch" | "onnxruntime" | "aoti" | "tensorrt" (selects the Backend).
    precision: "fp32" | "fp16" | "bf16" | "int8". device: "cpu" | "cuda".
    provider: the ORT execution provider the engine runs on (ORT engines only).
    onnx_graph: the ONNX graph an ORT engine consumes (ORT engines only).
    needs_onnx: built from the shared FP32 ONNX export. needs_calibration: static INT8.
    """

    name: str
    backend: str
    precision: str
    device: str
    summary: str
    provider: str | None = None
    onnx_graph: OnnxGraph | None = None
    needs_onnx: bool = True
    needs_calibration: bool = False

    @property
    def kind(self) -> str:
        """The backend (the name reports and older callers use)."""
        return self.backend

    def unavailable_reason(self) -> str | None:
        """Why this engine cannot run on this machine, or None. Builds nothing."""
        from segshield.engines.backends import get_backend

        return get_backend(self.backend).available(self)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary, with the reason it is unavailable here (or None)."""
        return {
            "name": self.name,
            "kind": self.backend,
            "precision": self.precision,
            "device": self.device,
            "provider": self.provider,
            "summary": self.summary,
            "needs_calibration": self.needs_calibration,
            "unavailable_reason": self.unavailable_reason(),
        }


def _ort(
    name: str, precision: str, provider: str, graph: OnnxGraph, summary: str, **flags: bool
) -> EngineSpec:
    device = "cpu" if provider == CPU_PROVIDER else "cuda"
    return EngineSpec(name, "onnxruntime", precision, device, summary, provider, graph, **flags)


def _other(
    backend: str, name: str, precision: str, device: str, summary: str, **flags: bool
) -> EngineSpec:
    flags.setdefault("needs_onnx", False)  # pytorch and AOTInductor start from the module
    return EngineSpec(name, backend, precision, device, summary, **flags)


_F32, _F16, _QDQ, _DYN = OnnxGraph.FP32, OnnxGraph.FP16, OnnxGraph.INT8_QDQ, OnnxGraph.INT8_DYNAMIC
_CPU, _CUDA, _TRT = CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER

ENGINE_SPECS: dict[str, EngineSpec] = {
    s.name: s
    for s in (
        _other("pytorch", "pytorch", "fp32", "cpu", "FP32 PyTorch source model (eager, CPU)"),
        _ort("ort-fp32", "fp32", _CPU, _F32, "ONNX Runtime CPU, FP32, ORT_ENABLE_ALL"),
        _ort("ort-fp16", "fp16", _CPU, _F16, "ONNX Runtime CPU, FP16 graph with FP32 IO"),
        _ort("ort-int8", "int8", _CPU, _QDQ,
             "ONNX Runtime CPU, static QDQ INT8 calibrated on real images",
             needs_calibration=True),
        _ort("ort-int8-dynamic", "int8", _CPU, _DYN,
             "ONNX Runtime CPU, dynamic INT8 (weights int8, activations at run time)"),
        _other("aoti", "aoti-fp32", "fp32", "cpu", "AOTInductor .pt2, CPU FP32 (C++ kernels)"),
        _other("aoti", "aoti-cuda-fp32", "fp32", "cuda", "AOTInductor .pt2, CUDA FP32"),
        _other("aoti", "aoti-cuda-fp16", "fp16", "cuda", "AOTInductor .pt2, CUDA FP16"),
        _other("aoti", "aoti-cuda-bf16", "bf16", "cuda", "AOTInductor .pt2, CUDA BF16"),
        _ort("ort-cuda", "fp32", _CUDA, _F32, "ONNX Runtime CUDA EP, FP32"),
        _ort("ort-cuda-fp16", "fp16", _CUDA, _F16,
             "ONNX Runtime CUDA EP, FP16 graph with FP32 IO"),
        _ort("ort-trt", "fp32", _TRT, _F32, "ONNX Runtime TensorRT EP, FP32"),
        # TensorRT itself lowers to FP16 (trt_fp16_enable, from the precision): FP32 graph in.
        _ort("ort-trt-fp16", "fp16", _TRT, _F32, "ONNX Runtime TensorRT EP, trt_fp16_enable"),
        _ort("ort-trt-int8", "int8", _TRT, _QDQ,
             "ONNX Runtime TensorRT EP, symmetric QDQ INT8 model calibrated on real images",
             needs_calibration=True),
        _other("tensorrt", "tensorrt-fp32", "fp32", "cuda", "native TensorRT engine, FP32",
               needs_onnx=True),
        _other("tensorrt", "tensorrt-fp16", "fp16", "cuda", "native TensorRT engine, FP16",
               needs_onnx=True),
        _other("tensorrt", "tensorrt-int8", "int8", "cuda",
               "native TensorRT engine, INT8 with IInt8EntropyCalibrator2 on real images",
               needs_onnx=True, needs_calibration=True),
    )
}  # fmt: skip

# Names the audit config used before engine specs existed.
ENGINE_ALIASES: dict[str, str] = {"onnxruntime": "ort-fp32", "onnxruntime-cuda": "ort-cuda"}
CPU_ENGINES: tuple[str, ...] = tuple(n for n, s in ENGINE_SPECS.items() if s.device == "cpu")
# The CPU matrix an audit (and `segshield export`) builds by default. GPU engines are listed
# in ENGINE_SPECS and reported unavailable on a machine without a GPU.
DEFAULT_ENGINES: tuple[str, ...] = ("pytorch", "ort-fp32", "ort-fp16", "ort-int8", "aoti-fp32")


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


__all__ = [
    "CPU_ENGINES",
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "DEFAULT_ENGINES",
    "ENGINE_ALIASES",
    "ENGINE_SPECS",
    "TENSORRT_PROVIDER",
    "EngineSpec",
    "OnnxGraph",
    "engine_unavailable_reason",
    "resolve_engine_names",
]
