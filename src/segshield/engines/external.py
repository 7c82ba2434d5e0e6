"""Engines built outside segshield (`--engine-file`): an ONNX file or a TensorRT plan that a
team already ships, audited as it is (Polygraphy-style loaders: `onnx_engine_from_file`,
`trt_engine_from_file`).

The file's input and output are read from the file and checked against the audited data
before anything runs: one float image input (N,C,H,W) whose fixed dims match the data's, and
logits (N,K,H,W) (a classifier: (N,K)) with the task's K. A fixed batch axis is fine: the
runner feeds batches of that size. Every refusal is one line naming the file, both numbers
and the fix. Nothing here measures parity: the audit does that as for every other engine.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segshield.engines.base import Runner, as_float32_batch, check_logits
from segshield.engines.records import Artifact, EngineRecord
from segshield.errors import EngineUnavailableError, ModelLoadError

# How an engine file is run, by suffix.
ENGINE_FILE_SUFFIXES: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}
# Engine names of files: "file:<stem>"; the registry's names never contain ":".
EXTERNAL_PREFIX = "file:"
# Nodes that make an ONNX graph compute in INT8 (QDQ, QOperator or dynamic quantization).
INT8_OPS = frozenset(
    {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
     "DynamicQuantizeLinear"}
)  # fmt: skip
# Providers never picked by default: Azure runs nothing locally; TensorRT's EP builds an
# engine per input shape on first use (minutes) and needs profile options: ask for it.
_NOT_DEFAULT = ("AzureExecutionProvider", "TensorrtExecutionProvider")
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")
_ONNX_FLOATS = {1: "float32", 10: "float16", 16: "bfloat16"}  # onnx.TensorProto codes
_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class ExpectedIO:
    """What the audited data needs of an engine.

    image_chw: (C, H, W) of the audited images. classes: K, the logits' channels.
    segmentation: logits (N,K,H,W) when True, a classifier's (N,K) when False.
    """

    image_chw: tuple[int, ...]
    classes: int
    segmentation: bool = True


def engine_file_name(path: str | os.PathLike[str], taken: Sequence[str] = ()) -> str:
    """The report name of an engine file: "file:<stem>", with "-2", "-3"... when taken."""
    base = f"{EXTERNAL_PREFIX}{Path(path).stem}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def default_ort_providers() -> list[str]:
    """The execution providers this onnxruntime offers, in its preferred order, CPU last
    (Azure and TensorRT only when asked for)."""
    from segshield.engines.ort_runner import available_ort_providers

    cpu = "CPUExecutionProvider"
    return [p for p in available_ort_providers() if p not in (*_NOT_DEFAULT, cpu)] + [cpu]


class FixedBatchRunner:
    """A runner for an engine whose batch axis is fixed at `batch`: feeds chunks of exactly
    that size, padding the last one with copies of its last image (their logits are dropped;
    engines compute each image on its own in inference)."""

    def __init__(self, inner: Runner, batch: int) -> None:
        self.inner, self.batch = inner, int(batch)
        self.name, self.kind = inner.name, inner.kind
        self.precision, self.providers = inner.precision, inner.providers

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits."""
        images = as_float32_batch(batch, self.name)
        n, out = images.shape[0], []
        for start in range(0, n, self.batch):
            chunk = images[start : start + self.batch]
            short = self.batch - chunk.shape[0]
            if short:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
            out.append(self.inner.infer(chunk)[: self.batch - short])
        return check_logits(np.concatenate(out), self.name, images.shape)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "fixed_batch": self.batch}


# ------------------------------------------------------------------------------------ ONNX


def onnx_engine_from_file(
    path: str | os.PathLike[str],
    expected: ExpectedIO,
    *,
    providers: Sequence[str] | None = None,
    name: str | None = None,
) -> tuple[Runner, EngineRecord]:
    """Load an ONNX file built elsewhere with ONNX Runtime, checked against `expected`.

    providers: execution providers in priority order (default `default_ort_providers()`);
    the record lists the ones the session really uses. External data next to the file
    (``model.onnx.data``) is read by ONNX Runtime and hashed into the record.

    Raises:
        ModelLoadError: missing or unreadable file, missing external data, an input or
            output the audited data cannot use (the message names both sides and the fix).
        EngineUnavailableError: onnxruntime is not installed.
    """
    from segshield.engines.ort_runner import OrtRunner

    path = Path(path)
    start = time.perf_counter()
    proto = _read_onnx(path)
    data_files = _external_data(proto, path)
    io = _check_onnx_io(proto, path, expected)
    ort_runner = OrtRunner(
        path,
        list(providers) if providers else default_ort_providers(),
        require=False,
        name=name or engine_file_name(path),
        precision=graph_precision(proto),
    )
    batch = io["fixed_batch"]
    runner: Runner = ort_runner if batch is None else FixedBatchRunner(ort_runner, batch)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    record = EngineRecord(
        runner.name,
        "onnxruntime",
        runner.precision,
        device="cuda" if runner.providers[0] in _GPU_PROVIDERS else "cpu",
        providers=list(runner.providers),
        artifacts=[
            Artifact("onnx", str(path), ort_runner.sha256, path.stat().st_size),
            *(Artifact.of("onnx-data", f) for f in data_files),
        ],
        build_seconds=round(time.perf_counter() - start, 3),
        notes=_notes(path, io),
        details={
            "external": True,
            **io,
            "opset": opset,
            "producer": f"{proto.producer_name} {proto.producer_version}".strip() or None,
            "requested_providers": list(ort_runner.requested_providers),
            "onnxruntime_version": ort_runner.ort_version,
        },
    )
    return runner, record


def graph_precision(proto: Any) -> str:
    """The precision an ONNX graph computes in: int8 when it has quantization nodes, else the
    float type most of its weights (a weightless graph: its input) use, fp32, fp16 or bf16."""
    if any(node.op_type in INT8_OPS for node in proto.graph.node):
        return "int8"
    counts = Counter(
        _ONNX_FLOATS[t.data_type] for t in proto.graph.initializer if t.data_type in _ONNX_FLOATS
    )
    if not counts and proto.graph.input:
        elem = proto.graph.input[0].type.tensor_type.elem_type
        counts[_ONNX_FLOATS.get(elem, "float32")] += 1
    return _PRECISION[counts.most_common(1)[0][0]] if counts else "fp32"


def _read_onnx(path: Path) -> Any:
    """The file's graph, without its weights; ModelLoadError unless it is an ONNX model."""
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"engine file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc
    if not proto.graph.node and not proto.graph.input:
        raise ModelLoadError(f"{path} is not an ONNX model (no graph inside)")
    return proto


def _external_data(proto: Any, path: Path) -> list[Path]:
    """The external data files the graph's weights live in (beside `path`), all present."""
    import onnx

    locations = {
        entry.value
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for entry in t.external_data
        if entry.key == "location"
    }
    files = [path.parent / loc for loc in sorted(locations)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelLoadError(
            f"{path} keeps its weights in external data {missing}, not found in "
            f"{path.parent}; copy the data file(s) next to the model"
        )
    return files


def _dims(value_info: Any) -> list[int | str | None] | None:
    """A graph value's shape: ints where fixed, names where symbolic, None where unnamed."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim]  # fmt: skip


def _check_onnx_io(proto: Any, path: Path, expected: ExpectedIO) -> dict[str, Any]:
    """Check the graph's one image input and its logits output against `expected`; return
    their names and shapes, the fixed batch (None: dynamic) and whether H/W are dynamic."""
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        listed = ", ".join(f"{i.name!r} {_dims(i)}" for i in inputs) or "none"
        raise ModelLoadError(
            f"{path} has {len(inputs)} inputs ({listed}); an audited engine takes exactly one "
            "image input (N,C,H,W): export the model with the image as its only input"
        )
    image = inputs[0]
    elem = image.type.tensor_type.elem_type
    if elem not in (1, 10):  # float32, float16
        raise ModelLoadError(
            f"{path} input {image.name!r} has element type "
            f"{_ONNX_FLOATS.get(elem, _elem_name(elem))}; segshield feeds float32 (or float16) "
            "images in [0,1]"
        )
    shape = _dims(image)
    rank = len(expected.image_chw) + 1
    if shape is not None and len(shape) != rank:
        raise ModelLoadError(
            f"{path} input {image.name!r} has shape {shape} (rank {len(shape)}); the audited "
            f"images are (N,{','.join(map(str, expected.image_chw))}), rank {rank}"
        )
    _check_image_dims(path, image.name, shape, expected)
    output = _logits_output(proto, path, expected)
    fixed = [d for d in (shape or [None] * rank)[2:] if isinstance(d, int) and d > 0]
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    return {
        "input_name": image.name,
        "input_shape": shape,
        "output_name": output.name,
        "output_shape": _dims(output),
        "fixed_batch": batch,
        "dynamic_hw": not fixed,
    }


def _check_image_dims(
    path: Path, input_name: str, shape: list[int | str | None] | None, expected: ExpectedIO
) -> None:
    if shape is None:
        return
    c, *spatial = expected.image_chw
    if isinstance(shape[1], int) and shape[1] > 0 and shape[1] != c:
        raise ModelLoadError(
            f"{path} input {input_name!r} takes {shape[1]}-channel images (shape {shape}) but "
            f"the audited images have {c} channel(s); audit data with {shape[1]} channel(s) "
            "or pass the model that takes these images"
        )
    want = shape[2:]
    if any(isinstance(w, int) and w > 0 and w != s for w, s in zip(want, spatial, strict=True)):
        model_size = "x".join(str(d) if isinstance(d, int) else "?" for d in want)
        data_size = "x".join(map(str, spatial))
        raise ModelLoadError(
            f"{path} input {input_name!r} takes {model_size} images (shape {shape}) but the "
            f"audited images are {data_size}; audit at the model's size (--size "
            f"{want[-1]}) or export the model with dynamic height/width"
        )


def _logits_output(proto: Any, path: Path, expected: ExpectedIO) -> Any:
    """The output OrtRunner reads ("logits", else the first), checked against `expected`."""
    outputs = list(proto.graph.output)
    if not outputs:
        raise ModelLoadError(f"{path} has no outputs")
    output = next((o for o in outputs if o.name == "logits"), outputs[0])
    shape = _dims(output)
    if shape is None:
        return output
    k, (_, *spatial) = expected.classes, expected.image_chw
    want = f"(N,{k},{','.join(map(str, spatial))})" if expected.segmentation else f"(N,{k})"
    rank = len(spatial) + 2 if expected.segmentation else 2
    fixed = [(d, w) for d, w in zip(shape[1:], [k, *spatial], strict=False)
             if isinstance(d, int) and d > 0]  # fmt: skip
    if len(shape) != rank or any(d != w for d, w in fixed):
        raise ModelLoadError(
            f"{path} output {output.name!r} has shape {shape}; the audit needs logits {want} "
            f"for this task ({k} class channel(s)); check --num-classes/--task or the file"
        )
    return output


def _elem_name(elem: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem).lower()
    except ValueError:
        return f"type {elem}"


def _notes(path: Path, image: dict[str, Any]) -> list[str]:
    notes = [
        f"built outside segshield ({path.name}), audited as it is; its clean parity and "
        "health are measured against the source model on this audit's images"
    ]
    if image["fixed_batch"] is not None:
        notes.append(f"its batch axis is fixed at {image['fixed_batch']}: images are fed in "
                     "batches of that size")  # fmt: skip
    return notes


# ------------------------------------------------------------------------------- TensorRT


def trt_engine_from_file(
    path: str | os.PathLike[str],
    expected: ExpectedIO,
    *,
    name: str | None = None,
    device: str = "cuda",
) -> tuple[Runner, EngineRecord]:
    """Load a serialized TensorRT plan built elsewhere, checked against `expected`.

    Raises:
        EngineUnavailableError: TensorRT or CUDA is missing here (the audit records the
            engine as unavailable with this reason).
        ModelLoadError: missing file, a plan this TensorRT cannot read, or an input that does
            not fit the audited images.
    """
    from segshield.lazy import tensorrt_unavailable_reason

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"engine file not found: {path}")
    reason = tensorrt_unavailable_reason()
    if reason:
        raise EngineUnavailableError(
            f"TensorRT is not usable here; cannot audit {path.name}: {reason}"
        )
    from segshield.engines.tensorrt_runner import TensorRTRunner

    start = time.perf_counter()
    runner = TensorRTRunner(
        path, precision="unknown", device=device, name=name or engine_file_name(path)
    )
    if tuple(runner.input_chw) != tuple(expected.image_chw):
        raise ModelLoadError(
            f"{path} takes images (N,{','.join(map(str, runner.input_chw))}) but the audited "
            f"images are (N,{','.join(map(str, expected.image_chw))}); audit at the plan's "
            "size (--size) or rebuild the plan for these images"
        )
    record = EngineRecord(
        runner.name,
        "tensorrt",
        "unknown",
        device=str(runner.device),
        providers=list(runner.providers),
        artifacts=[Artifact("plan", str(path), runner.sha256, path.stat().st_size)],
        build_seconds=round(time.perf_counter() - start, 3),
        notes=[
            f"built outside segshield ({path.name}), audited as it is; a plan does not say "
            "which precisions its builder allowed"
        ],
        details={"external": True, "input_name": runner.input_name,
                 "output_name": runner.output_name, "max_batch": runner.max_batch},
    )  # fmt: skip
    return runner, record


def engine_from_file(
    path: str | os.PathLike[str],
    expected: ExpectedIO,
    *,
    name: str | None = None,
    providers: Sequence[str] | None = None,
) -> tuple[Runner, EngineRecord]:
    """Load an engine file by its suffix (`ENGINE_FILE_SUFFIXES`)."""
    path = Path(path)
    backend = ENGINE_FILE_SUFFIXES.get(path.suffix.lower())
    if backend is None:
        raise ModelLoadError(
            f"{path}: not an engine file; expected {', '.join(ENGINE_FILE_SUFFIXES)}"
        )
    if backend == "tensorrt":
        return trt_engine_from_file(path, expected, name=name)
    return onnx_engine_from_file(path, expected, providers=providers, name=name)


__all__ = [
    "ENGINE_FILE_SUFFIXES",
    "EXTERNAL_PREFIX",
    "ExpectedIO",
    "FixedBatchRunner",
    "default_ort_providers",
    "engine_file_name",
    "engine_from_file",
    "graph_precision",
    "onnx_engine_from_file",
    "trt_engine_from_file",
]
