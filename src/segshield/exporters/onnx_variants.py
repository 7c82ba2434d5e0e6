"""Lower-precision ONNX variants of a verified FP32 export: FP16, static INT8 (QDQ), dynamic INT8.

Loaders follow Polygraphy's `XFromY` naming. Every variant keeps FP32 inputs and outputs, so
the same float32 (N,C,H,W) images in [0,1] feed every engine. onnx and onnxruntime are imported
when a variant is built, not when this module is imported.

Static INT8 is calibrated on *real images* handed in by the caller (the audit's training
split); the images' SHA-256 is recorded so a report can say exactly what calibrated it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segshield.errors import DataError, ExportError
from segshield.hashing import sha256_bytes, sha256_file

logger = logging.getLogger(__name__)

CalibrationMethodName = Literal["minmax", "entropy", "percentile"]
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")

# Ops that count as "compute" when summarising which precision a graph runs in.
_LAYOUT_OPS = frozenset(
    {"Cast", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Reshape",
     "ReorderInput", "ReorderOutput", "Identity", "Constant", "Shape", "Unsqueeze", "Squeeze"}
)  # fmt: skip


@dataclass(frozen=True)
class OnnxVariant:
    """An ONNX file derived from an FP32 export.

    `precision` is "fp16" or "int8"; `method` says how ("float16", "qdq-static", "dynamic");
    `details` holds converter/calibration facts and op counts; `notes` are report-ready
    sentences about what the conversion did (or did not) change.
    """

    path: Path
    sha256: str
    source_sha256: str
    precision: str
    method: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (path as a string, notes as a list)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["notes"] = list(self.notes)
        return data


# ------------------------------------------------------------------------------------ images


def check_calibration_images(
    images: object, expected_chw: tuple[int, ...] | None = None
) -> np.ndarray:
    """Validate calibration images; return them as C-contiguous float32 (N,C,H,W) in [0,1].

    Raises DataError for anything that is not a non-empty, finite, [0,1] float batch of the
    model's (C,H,W) — integer 0..255 images and unscaled data are refused, not guessed at.
    """
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[0] == 0:
        shape = getattr(images, "shape", type(images).__name__)
        raise DataError(f"calibration images must be a non-empty array (N,C,H,W), got {shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"calibration images must be float images in [0,1], got dtype {images.dtype}"
        )
    out = np.ascontiguousarray(images, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError("calibration images contain NaN or Inf values")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"calibration images must lie in [0,1] like the audit's images, got [{lo:.3g}, "
            f"{hi:.3g}]"
        )
    if expected_chw is not None and tuple(out.shape[1:]) != tuple(expected_chw):
        raise DataError(
            f"calibration images have shape (N,C,H,W)={out.shape}; the model expects "
            f"(N,{','.join(str(d) for d in expected_chw)})"
        )
    return out


def images_digest(images: np.ndarray) -> str:
    """SHA-256 of a float32 image batch (shape and bytes), to record what calibrated an engine."""
    arr = np.ascontiguousarray(images, dtype=np.float32)
    return sha256_bytes(repr(arr.shape).encode() + arr.tobytes())


class ImageCalibrationReader:
    """ONNX Runtime `CalibrationDataReader` over real images, in order, `batch_size` at a time.

    `get_next()` returns `{input_name: images[i:i+batch_size]}` (float32 (B,C,H,W)) and None at
    the end. ORT recognises the class by its `get_next` method, so onnxruntime is not imported.
    `batches_served` / `images_served` count what was handed out since the last `rewind()`.
    """

    def __init__(self, images: np.ndarray, input_name: str = "images", batch_size: int = 8):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.images = check_calibration_images(images)
        self.input_name = input_name
        self.batch_size = batch_size
        self._next = 0
        self.batches_served = 0
        self.images_served = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as an ORT feed, or None when every image was served."""
        if self._next >= len(self.images):
            return None
        chunk = self.images[self._next : self._next + self.batch_size]
        self._next += len(chunk)
        self.batches_served += 1
        self.images_served += len(chunk)
        return {self.input_name: chunk}

    def rewind(self) -> None:
        """Start again from the first image."""
        self._next = 0
        self.batches_served = 0
        self.images_served = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed


# ------------------------------------------------------------------------------------ FP16


def onnx_fp16_from_onnx(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, keep_io_types: bool = True
) -> OnnxVariant:
    """Convert an FP32 ONNX file to FP16 weights and activations, FP32 IO kept by default.

    Uses onnxruntime.transformers.float16 (or onnxconverter-common's copy); without either, a
    plain-onnx converter casts every float tensor and wraps the graph in Casts. Values outside
    FP16's range are clamped by the converter; how many is recorded in `details`.

    Raises:
        ExportError: the source cannot be read or the converted model fails onnx.checker.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    model = _load_onnx(src)
    converter, convert = _float16_converter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if convert is None:
                converted = _float16_with_onnx(model, keep_io_types=keep_io_types)
            else:
                converted = convert(model, keep_io_types=keep_io_types)
        except Exception as exc:
            raise ExportError(f"FP16 conversion of {src.name} failed ({converter}): {exc}") from exc
    _toposort(converted.graph)  # the ORT converter appends its IO Casts at the end
    clamped = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    for message in clamped[:5]:
        logger.debug("fp16 conversion: %s", message)
    _save_checked(converted, dst)
    seconds = time.perf_counter() - start
    f16 = sum(1 for t in converted.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    notes = []
    if clamped:
        notes.append(
            f"{len(clamped)} converter warning(s): some weights were outside FP16's range "
            "and were clamped"
        )
    return OnnxVariant(
        path=dst,
        sha256=sha256_file(dst),
        source_sha256=sha256_file(src),
        precision="fp16",
        method="float16",
        seconds=seconds,
        details={
            "converter": converter,
            "keep_io_types": keep_io_types,
            "fp16_initializers": f16,
            "initializers": len(converted.graph.initializer),
            "clamp_warnings": len(clamped),
            "ops": _op_counts(converted),
        },
        notes=tuple(notes),
    )


def _float16_converter() -> tuple[str, Any]:
    """(label, convert(model, keep_io_types=...)) of the best FP16 converter installed."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return "onnxruntime.transformers.float16", convert_float_to_float16
    except ImportError:
        pass
    try:
        from onnxconverter_common.float16 import convert_float_to_float16

        return "onnxconverter_common.float16", convert_float_to_float16
    except ImportError:
        return "segshield.onnx-cast", None


def _float16_with_onnx(model: Any, *, keep_io_types: bool = True) -> Any:
    """Minimal FP16 conversion with plain onnx: float initializers/constants/tensor types become
    float16; with `keep_io_types`, FP32 graph inputs/outputs are bridged with Cast nodes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())  # work on a copy
    graph = model.graph

    def to_f16(tensor: Any) -> Any:
        arr = numpy_helper.to_array(tensor).astype(np.float32)
        arr = np.clip(arr, -65504.0, 65504.0).astype(np.float16)
        return numpy_helper.from_array(arr, tensor.name)

    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[i].CopyFrom(to_f16(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(to_f16(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    del graph.value_info[:]  # stale float types; re-inferred below

    if keep_io_types:
        new_nodes = []
        for inp in graph.input:
            if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            cast_name = f"{inp.name}__fp16"
            for node in graph.node:
                node.input[:] = [cast_name if x == inp.name else x for x in node.input]
            new_nodes.append(
                helper.make_node("Cast", [inp.name], [cast_name], to=TensorProto.FLOAT16)
            )
        tail = []
        for out in graph.output:
            if out.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            inner = f"{out.name}__fp16"
            for node in graph.node:
                node.output[:] = [inner if x == out.name else x for x in node.output]
            tail.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT))
        nodes = [*new_nodes, *graph.node, *tail]
        del graph.node[:]
        graph.node.extend(nodes)
    else:
        for value in (*graph.input, *graph.output):
            if value.type.tensor_type.elem_type == TensorProto.FLOAT:
                value.type.tensor_type.elem_type = TensorProto.FLOAT16
    return onnx.shape_inference.infer_shapes(model)


# ------------------------------------------------------------------------------------ INT8


def onnx_int8_from_onnx(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration_images: np.ndarray,
    *,
    method: CalibrationMethodName = "minmax",
    per_channel: bool = True,
    preprocess: bool = True,
    symmetric_activations: bool = False,
    calibration_batch_size: int = 8,
) -> OnnxVariant:
    """Static INT8 quantization (QDQ, S8S8) of an FP32 ONNX file, calibrated on real images.

    Args:
        src: FP32 ONNX file with one image input (N,C,H,W).
        dst: destination of the QDQ model (FP32 IO; Q/DQ pairs around quantized ops).
        calibration_images: float32 (N,C,H,W) real images in [0,1], e.g. the training split.
            Fed in order, `calibration_batch_size` at a time, through `ImageCalibrationReader`.
        method: "minmax", "entropy" or "percentile" (onnxruntime's calibrators).
        per_channel: per-output-channel weight scales (recommended for Conv).
        preprocess: run onnxruntime's `quant_pre_process` (shape inference, fusions) first.
        symmetric_activations: symmetric activation ranges (TensorRT's QDQ path wants them).
        calibration_batch_size: most images per calibration run (lowered to a divisor of N so
            every run has the same size, which ORT's histogram calibrators need).

    Raises:
        DataError: calibration images are not (N,C,H,W) float images in [0,1] of the model's
            size.
        ExportError: quantization fails or writes an invalid model.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    src, dst = Path(src), Path(dst)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    input_name, chw = _image_input(src)
    images = check_calibration_images(calibration_images, chw)
    # Equal-sized batches: ORT's histogram calibrators (entropy, percentile) fail on a short
    # last batch, so use the largest batch size <= the requested one that divides N.
    n = len(images)
    batch_size = max(d for d in range(1, min(calibration_batch_size, n) + 1) if n % d == 0)
    reader = ImageCalibrationReader(images, input_name, batch_size)
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    start = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".segshield-int8-", dir=dst.parent) as tmp:
        model_input = _preprocessed(src, Path(tmp)) if preprocess else src
        chatter = io.StringIO()
        try:
            # ORT's calibrators print progress to stdout; keep it out of the CLI's output.
            with contextlib.redirect_stdout(chatter), _quiet_ort_quantization():
                quantize_static(
                    str(model_input),
                    str(dst),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=calibrate,
                    extra_options={"ActivationSymmetric": symmetric_activations},
                )
        except Exception as exc:
            raise ExportError(
                f"static INT8 quantization of {src.name} failed ({method} calibration on "
                f"{len(images)} images): {type(exc).__name__}: {exc}"
            ) from exc
        for line in chatter.getvalue().splitlines():
            logger.debug("onnxruntime.quantization: %s", line)
    seconds = time.perf_counter() - start
    quantized = _load_onnx(dst)
    ops = _op_counts(quantized)
    source_ops = _op_counts(_load_onnx(src))
    q_inputs = _quantized_consumers(quantized)
    notes = [
        f"static QDQ INT8 (S8S8, per_channel={per_channel}), {method} calibration on "
        f"{len(images)} real images fed {batch_size} at a time "
        f"({reader.images_served} served)",
        "ops fed through DequantizeLinear (int8 inputs) in the QDQ graph: "
        + _fmt_counts(q_inputs)
        + "; ops without: "
        + _fmt_counts(_float_compute_ops(source_ops, q_inputs))
        + " (which of them run as integer kernels is up to the execution provider)",
    ]
    if method == "entropy":
        notes.append(
            "onnxruntime's quantize_static runs the entropy calibrator with 128 histogram bins "
            "and 128 quantized bins (not settable through quantize_static), so the KL search "
            "has few candidates and its ranges can equal MinMax's"
        )
    return OnnxVariant(
        path=dst,
        sha256=sha256_file(dst),
        source_sha256=sha256_file(src),
        precision="int8",
        method="qdq-static",
        seconds=seconds,
        details={
            "format": "QDQ",
            "activation_type": "int8",
            "weight_type": "int8",
            "per_channel": per_channel,
            "symmetric_activations": symmetric_activations,
            "preprocessed": preprocess,
            "calibration": {
                "method": method,
                "n_images": len(images),
                "images_served": reader.images_served,
                "batch_size": batch_size,
                "batches": reader.batches_served,
                "sha256": images_digest(images),
            },
            "quantized_ops": q_inputs,
            "ops": ops,
        },
        notes=tuple(notes),
    )


def onnx_int8_dynamic_from_onnx(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    per_channel: bool = True,
    preprocess: bool = True,
) -> OnnxVariant:
    """Dynamic INT8 quantization: INT8 weights, activations quantized at run time per tensor.

    onnxruntime's `quantize_dynamic` turns Conv into ConvInteger (and MatMul into
    MatMulInteger); other ops, ConvTranspose included, stay FP32. What was and was not
    quantized is read back from the written graph and reported in `notes`.

    Raises:
        ExportError: quantization fails or writes an invalid model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".segshield-int8d-", dir=dst.parent) as tmp:
        model_input = _preprocessed(src, Path(tmp)) if preprocess else src
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_ort_quantization():
                quantize_dynamic(
                    str(model_input), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel
                )
        except Exception as exc:
            raise ExportError(
                f"dynamic INT8 quantization of {src.name} failed: {type(exc).__name__}: {exc}"
            ) from exc
    seconds = time.perf_counter() - start
    ops = _op_counts(_load_onnx(dst))
    source_ops = _op_counts(_load_onnx(src))
    integer = {k: v for k, v in ops.items() if k.endswith("Integer")}
    left = {
        k: v
        for k, v in ops.items()
        if k not in _LAYOUT_OPS
        and not k.endswith("Integer")
        and k in source_ops
        and k not in {"Mul", "Add"}  # scale/bias arithmetic the quantizer adds around *Integer
    }
    notes = [
        "dynamic INT8 (weights int8 per_channel=" + str(per_channel) + ", activations uint8 "
        "quantized per tensor at run time by DynamicQuantizeLinear)",
        "integer ops: "
        + _fmt_counts(integer)
        + (f" (replacing {source_ops.get('Conv', 0)} Conv)" if "Conv" in source_ops else "")
        + "; ops left in float: "
        + _fmt_counts(left),
    ]
    if not integer:
        notes.append("quantize_dynamic quantized nothing: this engine computes in FP32")
    return OnnxVariant(
        path=dst,
        sha256=sha256_file(dst),
        source_sha256=sha256_file(src),
        precision="int8",
        method="dynamic",
        seconds=seconds,
        details={
            "weight_type": "int8",
            "activation_type": "uint8 (dynamic)",
            "per_channel": per_channel,
            "preprocessed": preprocess,
            "integer_ops": integer,
            "float_ops": left,
            "ops": ops,
        },
        notes=tuple(notes),
    )


def ort_compute_precision(path: str | os.PathLike[str]) -> dict[str, int]:
    """How many compute nodes run in FP16 vs FP32 once ONNX Runtime's CPU provider loads `path`.

    ORT's CPU provider has few FP16 kernels; it inserts Casts so unsupported FP16 nodes run in
    FP32. The graph ORT really executes (basic optimisations, after cast insertion) is read
    back and its node input types are counted. Returns {"fp16": n, "fp32": m, "other": k}
    over non-layout nodes.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(_ort_cpu_graph(path, "basic"))
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)
    }
    types.update({t.name: t.data_type for t in model.graph.initializer})
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in _LAYOUT_OPS or not node.input:
            continue
        elem = types.get(node.input[0])
        if elem == onnx.TensorProto.FLOAT16:
            counts["fp16"] += 1
        elif elem == onnx.TensorProto.FLOAT:
            counts["fp32"] += 1
        else:
            counts["other"] += 1
    return {"fp16": counts["fp16"], "fp32": counts["fp32"], "other": counts["other"]}


def ort_executed_ops(path: str | os.PathLike[str]) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime's CPU provider executes for `path` after its
    (extended, hardware-independent) fusions, e.g. how many QDQ Convs became QLinearConv."""
    return _op_counts(_ort_cpu_graph(path, "extended"))


def _ort_cpu_graph(path: str | os.PathLike[str], level: str) -> Any:
    """The optimised graph ORT's CPU provider builds from `path` ("basic" or "extended")."""
    import onnx
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    with tempfile.TemporaryDirectory(prefix=".segshield-ortopt-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[level]
        so.optimized_model_filepath = str(opt)
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return onnx.load(str(opt))


# --------------------------------------------------------------------------------- helpers


def _load_onnx(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ExportError(f"cannot read ONNX model {path}: {exc}") from exc


def _save_checked(model: Any, dst: Path) -> None:
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ExportError(f"converted model for {dst.name} fails onnx.checker: {exc}") from exc
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)


def _image_input(path: Path) -> tuple[str, tuple[int, ...] | None]:
    """(input name, (C,H,W) when fixed) of a single-input image model."""
    model = _load_onnx(path)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"{path.name} has {len(inputs)} inputs; expected one image input")
    dims = inputs[0].type.tensor_type.shape.dim
    chw = tuple(d.dim_value for d in dims[1:]) if len(dims) == 4 else None
    if chw is not None and not all(chw):
        chw = None
    return inputs[0].name, chw


def _preprocessed(src: Path, tmp: Path) -> Path:
    """onnxruntime's quant_pre_process into `tmp`; falls back to `src` with a warning."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = tmp / "preprocessed.onnx"
    try:
        quant_pre_process(str(src), str(out))
    except Exception as exc:
        logger.warning("quant_pre_process failed on %s (%s); quantizing it as is", src.name, exc)
        return src
    return out


class _OrtQuantizationChatter(logging.Filter):
    """Moves onnxruntime.quantization's root-logger warnings (e.g. pre-processing hints) to
    this module's debug log; errors pass through."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        if "onnxruntime/quantization" in path and record.levelno < logging.ERROR:
            logger.debug("onnxruntime.quantization: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def _quiet_ort_quantization() -> Iterator[None]:
    root = logging.getLogger()
    chatter = _OrtQuantizationChatter()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


def _toposort(graph: Any) -> None:
    """Reorder `graph.node` topologically in place (stable); onnx.checker requires it."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # a cycle or a dangling input: leave it to the checker
            ordered.extend(rest)
            break
        pending = rest
    copies = [type(n).FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def _op_counts(model: Any) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _quantized_consumers(model: Any) -> dict[str, int]:
    """Op types (other than Q/DQ) fed by a DequantizeLinear output: the ops running in INT8."""
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in {"QuantizeLinear", "DequantizeLinear"}:
            continue
        if any(i in dq_outputs for i in node.input):
            counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def _float_compute_ops(source_ops: dict[str, int], quantized: dict[str, int]) -> dict[str, int]:
    left = {}
    for op, n in source_ops.items():
        if op in _LAYOUT_OPS or op == "Relu":  # Relu folds into the Q range in QDQ graphs
            continue
        rest = n - quantized.get(op, 0)
        if rest > 0:
            left[op] = rest
    return left


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"


__all__ = [
    "CALIBRATION_METHODS",
    "ImageCalibrationReader",
    "OnnxVariant",
    "check_calibration_images",
    "images_digest",
    "onnx_fp16_from_onnx",
    "onnx_int8_dynamic_from_onnx",
    "onnx_int8_from_onnx",
    "ort_compute_precision",
    "ort_executed_ops",
]
