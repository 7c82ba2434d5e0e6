"""FP16 variant of a verified FP32 ONNX export (FP32 inputs and outputs kept by default).

The loader follows Polygraphy's `XFromY` naming. onnx and onnxruntime are imported when the
variant is built, not when this module is imported.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from segshield.errors import ExportError
from segshield.exporters.onnx_graph import OnnxVariant, load_onnx, op_counts, save_checked
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)


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
    model = load_onnx(src)
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
    save_checked(converted, dst)
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
            "ops": op_counts(converted),
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


__all__ = ["onnx_fp16_from_onnx"]
