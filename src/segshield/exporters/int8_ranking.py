"""The FP32-fallback ranking of the INT8 recipe search (:mod:`segshield.exporters.int8_search`):
which quantized activation tensors of a QDQ model lose the most, measured with ONNX
Runtime's ``qdq_loss_debug``, and which compute nodes keep each one in float.

An output tensor (the logits) whose own Q/DQ rounding already breaks the mask agreement ranks
first; the other tensors follow by their per-channel SQNR after their own Q/DQ (a whole-tensor
SQNR hides both a lopsided logit range and an outlier channel). onnx and onnxruntime are
imported when a ranking runs, not when this module is imported.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from segshield.exporters.calibration import ImageCalibrationReader
from segshield.exporters.onnx_graph import load_onnx
from segshield.exporters.ort_quantize import quiet_ort_quantization

# (source logits, engine logits) on the same images -> mask agreement in [0, 1].
Agreement = Callable[[np.ndarray, np.ndarray], float]

# Nodes the FP32 fallback may keep in float: the ones with weights that QDQ quantizes.
FALLBACK_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Element-wise activations the QDQ quantizer folds into the preceding compute node's range.
_FOLDED_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu"})

__all__ = ["FALLBACK_OPS", "Agreement", "fallback_sets", "rank_fp32_fallback"]


def rank_fp32_fallback(
    float_model: str | os.PathLike[str],
    qdq_model: str | os.PathLike[str],
    images: np.ndarray,
    source_logits: np.ndarray,
    agreement: Agreement,
    ok_min: float,
    work_dir: str | os.PathLike[str],
) -> list[dict[str, Any]]:
    """The quantized activation tensors of `qdq_model`, worst quantization error first, each
    with the compute nodes that must stay in FP32 for it to stay in float.

    `float_model` is the FP32 model `qdq_model` was quantized from (after pre-processing:
    its node names are the ones `nodes_to_exclude` takes). Both run on `images` (one batch)
    through onnxruntime's `qdq_loss_debug` (`modify_model_output_intermediate_tensors`,
    `collect_activations`, `create_activation_matching`, `compute_activation_error`).

    Each row: tensor; nodes (its producing compute node -- through a folded Relu/Clip -- and
    its compute consumers: excluding only the producer would leave the consumers' input
    Q/DQ, the same rounding); channel_sqnr_db (the mean over channels of the SQNR of the
    tensor after its own Q/DQ against before it -- per channel, because a whole-tensor SQNR
    is dominated by the largest channel, so an outlier channel that flattens every other
    channel to zero still scores well); sqnr_db and qdq_sqnr_db (onnxruntime's whole-tensor
    `xmodel_err` and `qdq_err`, for reference); and for graph outputs output_agreement (the
    mask agreement of the output before vs after its own Q/DQ). Graph outputs whose own
    Q/DQ breaks the agreement (< ok_min) come first, worst first; then the rest by
    channel_sqnr_db, lowest first.
    """
    from onnxruntime.quantization import qdq_loss_debug as dbg

    work = Path(work_dir)
    aug_float, aug_qdq = work / "float.augmented.onnx", work / "qdq.augmented.onnx"
    with contextlib.redirect_stdout(io.StringIO()), quiet_ort_quantization():
        dbg.modify_model_output_intermediate_tensors(str(float_model), str(aug_float))
        dbg.modify_model_output_intermediate_tensors(str(qdq_model), str(aug_qdq))
        input_name = _input_name(Path(float_model))

        def reader() -> ImageCalibrationReader:
            return ImageCalibrationReader(images, input_name, len(images))

        float_acts = dbg.collect_activations(str(aug_float), reader())
        qdq_acts = dbg.collect_activations(str(aug_qdq), reader())
        matched = dbg.create_activation_matching(qdq_acts, float_acts)
        errors = dbg.compute_activation_error(matched)

    graph = load_onnx(Path(float_model)).graph
    index = _GraphIndex(graph)
    rows = []
    for tensor, err in errors.items():
        nodes = index.fallback_nodes(tensor)
        if not nodes:
            continue
        pre = np.concatenate([np.ravel(a) for a in matched[tensor]["pre_qdq"]])
        post = np.concatenate([np.ravel(a) for a in matched[tensor]["post_qdq"]])
        if index.folded_relu(tensor):  # the QDQ graph's pre-Q/DQ tensor is the Conv's output
            pre = np.maximum(pre, 0.0)
        row: dict[str, Any] = {
            "tensor": tensor,
            "nodes": nodes,
            "channel_sqnr_db": round(
                _channel_sqnr(pre, post, index.channels(tensor), len(images)), 3
            ),
            "sqnr_db": round(float(err.get("xmodel_err", err["qdq_err"])), 3),
            "qdq_sqnr_db": round(float(err["qdq_err"]), 3),
        }
        if tensor in index.outputs and pre.size == source_logits.size:
            shape = source_logits.shape
            row["output_agreement"] = float(agreement(pre.reshape(shape), post.reshape(shape)))
        rows.append(row)

    def key(row: dict[str, Any]) -> tuple[int, float, int]:
        out = row.get("output_agreement")
        late = -index.position(row["nodes"][0])
        if out is not None and out < ok_min:
            return (0, out, late)
        return (1, row["channel_sqnr_db"], late)

    return sorted(rows, key=key)


def fallback_sets(ranking: list[dict[str, Any]], tensors: int) -> tuple[str, ...]:
    """The nodes kept in FP32 for the first `tensors` rows of a ranking, in ranking order."""
    out: dict[str, None] = {}
    for row in ranking[:tensors]:
        out.update(dict.fromkeys(row.get("nodes", ())))
    return tuple(out)


def _new_nodes_only(ranking: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ranking rows that add at least one node to those of the rows before them."""
    seen: set[str] = set()
    steps = []
    for row in ranking:
        nodes = set(row.get("nodes", ()))
        if nodes - seen:
            steps.append(row)
            seen |= nodes
    return steps


def _channel_sqnr(pre: np.ndarray, post: np.ndarray, channels: int | None, n: int) -> float:
    """Mean over channels of 20·log10(|x_c| / |x_c - y_c|) (dB); channels that are all zero
    before Q/DQ are left out; a whole-tensor SQNR when the channel count is unknown."""
    eps = float(np.finfo(np.float32).eps)
    if channels and pre.size % (n * channels) == 0:
        x = pre.reshape(n, channels, -1).transpose(1, 0, 2).reshape(channels, -1)
        y = post.reshape(n, channels, -1).transpose(1, 0, 2).reshape(channels, -1)
    else:
        x, y = pre.reshape(1, -1), post.reshape(1, -1)
    signal = np.linalg.norm(x.astype(np.float64), axis=1)
    noise = np.maximum(np.linalg.norm((x - y).astype(np.float64), axis=1), eps)
    live = signal > 0
    if not live.any():
        return float("inf")
    return float(np.mean(20.0 * np.log10(signal[live] / noise[live])))


class _GraphIndex:
    """Producers, consumers, channel counts and node order of a float ONNX graph."""

    def __init__(self, graph: Any) -> None:
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.order = {n.name: i for i, n in enumerate(graph.node)}
        self.outputs = {o.name for o in graph.output}
        self.shapes = {
            v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.value_info, *graph.output, *graph.input]
        }

    def position(self, node: str) -> int:
        return self.order.get(node, 0)

    def folded_relu(self, tensor: str) -> bool:
        node = self.producer.get(tensor)
        return node is not None and node.op_type == "Relu"

    def channels(self, tensor: str) -> int | None:
        dims = self.shapes.get(tensor, [])
        return dims[1] if len(dims) >= 2 and dims[1] > 0 else None

    def fallback_nodes(self, tensor: str) -> list[str]:
        """Producer (through a folded activation) and consumers of `tensor` among the
        compute nodes; empty when it has no compute producer (image input, pooling...)."""
        node = self.producer.get(tensor)
        if node is not None and node.op_type in _FOLDED_ACTIVATIONS and node.input:
            node = self.producer.get(node.input[0])
        if node is None or node.op_type not in FALLBACK_OPS or not node.name:
            return []
        nodes = [node.name]
        for consumer in self.consumers.get(tensor, []):
            if consumer.op_type in FALLBACK_OPS and consumer.name and consumer.name not in nodes:
                nodes.append(consumer.name)
        return nodes


def _input_name(path: Path) -> str:
    model = load_onnx(path)
    inits = {t.name for t in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)
