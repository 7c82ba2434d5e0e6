"""INT8 variants of a verified FP32 ONNX export: static (QDQ, calibrated on real images) and
dynamic (INT8 weights, activations quantized at run time).

Loaders follow Polygraphy's `XFromY` naming. Both keep FP32 inputs and outputs, so the same
float32 (N,C,H,W) images in [0,1] feed every engine. onnx and onnxruntime are imported when a
variant is built, not when this module is imported.

Static INT8 is calibrated on *real images* handed in by the caller (the audit's training
split); the images' SHA-256 is recorded so a report can say exactly what calibrated it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segshield.errors import ExportError
from segshield.exporters.calibration import (
    CALIBRATION_METHODS,
    CalibrationMethodName,
    ImageCalibrationReader,
    check_calibration_images,
    equal_batch_size,
    images_digest,
)
from segshield.exporters.onnx_graph import (
    LAYOUT_OPS,
    OnnxVariant,
    fmt_counts,
    load_onnx,
    op_counts,
)
from segshield.exporters.ort_quantize import quantize_quietly
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

# segshield's calibration method names -> onnxruntime's CalibrationMethod members.
_ORT_CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}

# ------------------------------------------------------------------------------ static INT8


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
    nodes_to_exclude: Sequence[str] = (),
    reduce_range: bool = False,
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
        nodes_to_exclude: names of nodes kept in FP32 (no Q/DQ around them), as named in the
            model that is quantized: after `quant_pre_process` when `preprocess` (see
            `segshield.exporters.int8_search`, which picks them).
        reduce_range: 7-bit weights, so that the u8s8 kernels of CPUs without VNNI (AVX2)
            cannot saturate their 16-bit intermediate sums (onnxruntime's advice for them).

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
    reader = _calibration_reader(src, calibration_images, method, calibration_batch_size)
    calibrate = CalibrationMethod[_ORT_CALIBRATORS[method]]
    excluded = sorted(set(nodes_to_exclude))
    start = time.perf_counter()

    def quantize(model_input: Path) -> None:
        quantize_static(
            str(model_input),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": symmetric_activations},
        )

    # ORT's calibrators print progress to stdout; keep it out of the CLI's output.
    chatter = quantize_quietly(
        quantize,
        src,
        dst,
        preprocess=preprocess,
        tmp_prefix=".segshield-int8-",
        failure=f"static INT8 quantization of {src.name} failed ({method} calibration on "
        f"{len(reader.images)} images)",
    )
    for line in chatter.splitlines():
        logger.debug("onnxruntime.quantization: %s", line)
    return _static_int8_variant(
        src,
        dst,
        reader,
        seconds=time.perf_counter() - start,
        method=method,
        per_channel=per_channel,
        symmetric_activations=symmetric_activations,
        preprocess=preprocess,
        excluded=excluded,
        reduce_range=reduce_range,
    )


def _calibration_reader(
    src: Path, calibration_images: np.ndarray, method: str, calibration_batch_size: int
) -> ImageCalibrationReader:
    """The checked images of `src`'s (C,H,W), served in equal batches of at most
    `calibration_batch_size` (ORT's histogram calibrators fail on a short last batch)."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    input_name, chw = _image_input(src)
    images = check_calibration_images(calibration_images, chw)
    return ImageCalibrationReader(
        images, input_name, equal_batch_size(len(images), calibration_batch_size)
    )


def _image_input(path: Path) -> tuple[str, tuple[int, ...] | None]:
    """(input name, (C,H,W) when fixed) of a single-input image model."""
    model = load_onnx(path)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"{path.name} has {len(inputs)} inputs; expected one image input")
    dims = inputs[0].type.tensor_type.shape.dim
    chw = tuple(d.dim_value for d in dims[1:]) if len(dims) == 4 else None
    if chw is not None and not all(chw):
        chw = None
    return inputs[0].name, chw


def _static_int8_variant(
    src: Path,
    dst: Path,
    reader: ImageCalibrationReader,
    *,
    seconds: float,
    method: str,
    per_channel: bool,
    symmetric_activations: bool,
    preprocess: bool,
    excluded: list[str],
    reduce_range: bool = False,
) -> OnnxVariant:
    """The record of the QDQ model written at `dst`, read back from the file."""
    quantized = load_onnx(dst)
    q_inputs = _quantized_consumers(quantized)
    settings = {
        "format": "QDQ",
        "activation_type": "int8",
        "weight_type": "int8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "symmetric_activations": symmetric_activations,
        "preprocessed": preprocess,
        "calibration": _calibration_record(method, reader),
        "nodes_excluded": excluded,
    }
    return OnnxVariant(
        path=dst,
        sha256=sha256_file(dst),
        source_sha256=sha256_file(src),
        precision="int8",
        method="qdq-static",
        seconds=seconds,
        details={**settings, "quantized_ops": q_inputs, "ops": op_counts(quantized)},
        notes=_static_int8_notes(
            method,
            per_channel,
            reader,
            q_inputs,
            op_counts(load_onnx(src)),
            excluded,
            reduce_range,
        ),
    )


def _calibration_record(method: str, reader: ImageCalibrationReader) -> dict[str, Any]:
    """What calibrated a static INT8 model: method, images (count, digest) and batches served."""
    return {
        "method": method,
        "n_images": len(reader.images),
        "images_served": reader.images_served,
        "batch_size": reader.batch_size,
        "batches": reader.batches_served,
        "sha256": images_digest(reader.images),
    }


def _static_int8_notes(
    method: str,
    per_channel: bool,
    reader: ImageCalibrationReader,
    q_inputs: dict[str, int],
    source_ops: dict[str, int],
    excluded: Sequence[str] = (),
    reduce_range: bool = False,
) -> tuple[str, ...]:
    """Report sentences: how the model was calibrated, which ops the QDQ graph quantizes."""
    notes = [
        f"static QDQ INT8 (S8S8, per_channel={per_channel}), {method} calibration on "
        f"{len(reader.images)} real images fed {reader.batch_size} at a time "
        f"({reader.images_served} served)",
        "ops fed through DequantizeLinear (int8 inputs) in the QDQ graph: "
        + fmt_counts(q_inputs)
        + "; ops without: "
        + fmt_counts(_float_compute_ops(source_ops, q_inputs))
        + " (which of them run as integer kernels is up to the execution provider)",
    ]
    if reduce_range:
        notes.append("weights quantized to 7 bits (reduce_range)")
    if excluded:
        notes.append(
            f"{len(excluded)} node(s) kept in FP32 (excluded from quantization): "
            + ", ".join(excluded)
        )
    if method == "entropy":
        notes.append(
            "onnxruntime's quantize_static runs the entropy calibrator with 128 histogram bins "
            "and 128 quantized bins (not settable through quantize_static), so the KL search "
            "has few candidates and its ranges can equal MinMax's"
        )
    return tuple(notes)


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
        if op in LAYOUT_OPS or op == "Relu":  # Relu folds into the Q range in QDQ graphs
            continue
        rest = n - quantized.get(op, 0)
        if rest > 0:
            left[op] = rest
    return left


# ----------------------------------------------------------------------------- dynamic INT8


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

    def quantize(model_input: Path) -> None:
        quantize_dynamic(
            str(model_input), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel
        )

    quantize_quietly(
        quantize,
        src,
        dst,
        preprocess=preprocess,
        tmp_prefix=".segshield-int8d-",
        failure=f"dynamic INT8 quantization of {src.name} failed",
    )
    seconds = time.perf_counter() - start
    ops = op_counts(load_onnx(dst))
    source_ops = op_counts(load_onnx(src))
    integer = {k: v for k, v in ops.items() if k.endswith("Integer")}
    left = {
        k: v
        for k, v in ops.items()
        if k not in LAYOUT_OPS
        and not k.endswith("Integer")
        and k in source_ops
        and k not in {"Mul", "Add"}  # scale/bias arithmetic the quantizer adds around *Integer
    }
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
        notes=_dynamic_int8_notes(per_channel, integer, left, source_ops),
    )


def _dynamic_int8_notes(
    per_channel: bool,
    integer: dict[str, int],
    left: dict[str, int],
    source_ops: dict[str, int],
) -> tuple[str, ...]:
    """Report sentences: which ops became integer ops and which were left in float."""
    notes = [
        "dynamic INT8 (weights int8 per_channel=" + str(per_channel) + ", activations uint8 "
        "quantized per tensor at run time by DynamicQuantizeLinear)",
        "integer ops: "
        + fmt_counts(integer)
        + (f" (replacing {source_ops.get('Conv', 0)} Conv)" if "Conv" in source_ops else "")
        + "; ops left in float: "
        + fmt_counts(left),
    ]
    if not integer:
        notes.append("quantize_dynamic quantized nothing: this engine computes in FP32")
    return tuple(notes)


__all__ = ["onnx_int8_dynamic_from_onnx", "onnx_int8_from_onnx"]
