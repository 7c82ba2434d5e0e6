"""The checks an ONNX export passes before `onnx_from_torch` returns it: the sample, the
file's structure (one self-contained file, names, dynamic axes) and its parity with PyTorch on
ONNX Runtime's CPU provider; and the names of its symbolic axes. onnx and onnxruntime are
imported when a function runs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from segshield.errors import ExportError

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
HW_AXIS_NAMES = ("height", "width")


def name_hw_axes(path: Path) -> None:
    """Rename the image input's symbolic height/width (the dynamo exporter's "s53", "s0") to
    "height"/"width" in every shape of the graph ("8*((s53//8))" -> "8*((height//8))"), so
    the file, the manifest and error messages say which axis is which."""
    import onnx

    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    old = [d.dim_param for d in dims[2:]] if len(dims) == 4 else []
    if len(old) != 2 or not all(old) or tuple(old) == HW_AXIS_NAMES:
        return
    names = dict(zip(old, HW_AXIS_NAMES, strict=True))
    token = re.compile(r"\b(" + "|".join(map(re.escape, old)) + r")\b")
    graph = proto.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = token.sub(lambda m: names[m.group(0)], dim.dim_param)
    onnx.save(proto, str(path))


def check_sample(sample: torch.Tensor) -> None:
    """Refuse anything but finite float32 (N,C,H,W) images, N >= 1, as an export sample."""
    if not isinstance(sample, torch.Tensor):
        raise ExportError(f"sample must be a torch.Tensor, got {type(sample).__name__}")
    if sample.ndim not in (4, 5) or sample.shape[0] < 1:
        raise ExportError(
            f"sample must have shape (N,C,H,W) or (N,C,D,H,W) with N >= 1, got "
            f"{tuple(sample.shape)}"
        )
    if sample.dtype != torch.float32:
        raise ExportError(f"sample must be float32 images in [0,1], got dtype {sample.dtype}")
    if not bool(torch.isfinite(sample).all()):
        raise ExportError("sample contains NaN or Inf values")


def check_onnx_file(path: Path, dynamic_hw: bool = False) -> int:
    """Checker + structure: single file, one input/output named as promised, dynamic batch
    (and dynamic height/width when `dynamic_hw`).

    Returns the default-domain opset actually recorded in the file.
    """
    import onnx  # deferred: only exporting needs it

    if not path.is_file():
        raise ExportError(f"exporter reported success but wrote no file at {path}")
    extra = sorted(p.name for p in path.parent.iterdir() if p != path)
    if extra:
        raise ExportError(f"export of {path.name} wrote side files {extra}; expected one file")
    try:
        onnx.checker.check_model(str(path))
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"exported file {path.name} fails onnx.checker: {exc}") from exc

    external = [
        t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        raise ExportError(f"exported file references external data for {external[:3]}")
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"exported graph has inputs {inputs} and outputs {outputs}; "
            f"expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
        )
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if not dims or not dims[0].dim_param:
        raise ExportError("exported input 'images' has a fixed batch axis; expected a dynamic one")
    if dynamic_hw and (len(dims) != 4 or not (dims[2].dim_param and dims[3].dim_param)):
        shape = [d.dim_param or d.dim_value for d in dims]
        raise ExportError(f"exported input 'images' has shape {shape}; height/width are fixed")
    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise ExportError("exported file declares no default-domain (ai.onnx) opset")


def ort_parity(path: Path, cases: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest |ORT − reference| over all (input, reference logits) cases, on CPU."""
    from segshield.lazy import import_onnxruntime

    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported file: {exc}") from exc
    worst = 0.0
    for images, ref in cases:
        try:
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
        except Exception as exc:
            raise ExportError(
                f"ONNX Runtime failed on the exported file with a batch of shape "
                f"{images.shape}: {exc}"
            ) from exc
        if got.shape != ref.shape:
            raise ExportError(
                f"exported model returns shape {got.shape} for input {images.shape}; "
                f"PyTorch returns {ref.shape}"
            )
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        if not np.isfinite(diff).all():
            return math.nan
        worst = max(worst, float(diff.max(initial=0.0)))
    return worst


__all__ = [
    "HW_AXIS_NAMES",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "check_onnx_file",
    "check_sample",
    "name_hw_axes",
    "ort_parity",
]
