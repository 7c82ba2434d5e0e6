"""What the FP16 and INT8 ONNX variant builders share: the `OnnxVariant` record, checked
load/save of ONNX files, op counts, and the graph ONNX Runtime's CPU provider really executes.

onnx and onnxruntime are imported when a function runs, not when this module is imported.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segshield.errors import ExportError

# Ops that do not count as "compute" when summarising which precision a graph runs in.
LAYOUT_OPS = frozenset(
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


# ------------------------------------------------------------------------------ files, counts


def load_onnx(path: Path) -> Any:
    """onnx.load(path); ExportError when it cannot be read."""
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ExportError(f"cannot read ONNX model {path}: {exc}") from exc


def save_checked(model: Any, dst: Path) -> None:
    """Write `model` to `dst` (atomically) once it passes onnx.checker; ExportError otherwise."""
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ExportError(f"converted model for {dst.name} fails onnx.checker: {exc}") from exc
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)


def op_counts(model: Any) -> dict[str, int]:
    """{op_type: node count} of a model's graph, sorted by op type."""
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def fmt_counts(counts: dict[str, int]) -> str:
    """Counts as report text, e.g. "2 Conv, 1 Relu"; "none" when empty."""
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"


# -------------------------------------------------------------------- what ORT really executes


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
        if node.op_type in LAYOUT_OPS or not node.input:
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
    return op_counts(_ort_cpu_graph(path, "extended"))


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


__all__ = [
    "LAYOUT_OPS",
    "OnnxVariant",
    "fmt_counts",
    "load_onnx",
    "op_counts",
    "ort_compute_precision",
    "ort_executed_ops",
    "save_checked",
]
