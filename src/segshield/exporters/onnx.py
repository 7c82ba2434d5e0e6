"""Export a PyTorch segmentation model to a single ONNX file and prove it still agrees.

`onnx_from_torch` follows Polygraphy's loader naming (`XFromY`). An export is only returned
after three checks: `onnx.checker`, a structural check (one self-contained file, names,
dynamic batch axis) and numerical parity against PyTorch on ONNX Runtime (CPU) at two batch
sizes. A failed export never leaves a file at the requested path.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from segshield.errors import ExportError, ModelOutputError
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS_NAME = "batch"

Exporter = Literal["dynamo", "torchscript"]


@dataclass(frozen=True)
class OnnxExport:
    """A verified ONNX export.

    `max_abs_diff` is the largest |ONNX Runtime − PyTorch| logit difference over the parity
    batches, `logit_scale` the largest |PyTorch logit| there and `tolerance` the bound that was
    applied, ``atol + rtol * logit_scale``; `parity_batch` is the size of the main parity
    batch (the `sample`); a second batch of another size is also compared. `seconds` is the
    wall time of the export call.
    """

    path: Path
    sha256: str
    opset: int
    exporter: Exporter
    input_name: str
    output_name: str
    max_abs_diff: float
    tolerance: float
    parity_batch: int
    seconds: float
    logit_scale: float = 0.0
    atol: float = 1e-4
    rtol: float = 1e-5

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (path as a string)."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def onnx_from_torch(
    model: nn.Module,
    sample: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    opset: int = 18,
    dynamo: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-5,
) -> OnnxExport:
    """Export `model` to one self-contained ONNX file at `path` with a dynamic batch axis.

    Args:
        model: segmentation model mapping float32 (N,C,H,W) images in [0,1] to (N,K,H,W)
            logits. It is exported in eval mode; its train/eval flags are restored afterwards.
        sample: real input images, float32 (N,C,H,W), N >= 1. Used for tracing and parity.
        path: destination `.onnx` file (parent folders are created; overwritten on success).
        opset: ONNX default-domain opset to target.
        dynamo: try the `torch.export`-based exporter first; on failure fall back to the
            TorchScript exporter with a warning. `False` uses TorchScript directly.
        atol, rtol: the largest accepted |ONNX Runtime − PyTorch| logit difference is
            ``atol + rtol * max|PyTorch logit|``: FP32 kernels differ by a relative ~1e-7, so
            a fixed absolute bound would reject a correct export of a model whose logits span
            ±1000 while accepting a broken one whose logits span ±0.01.

    Raises:
        ExportError: bad sample/model output, export or checker failure, or parity above the
            tolerance.
        ModelOutputError: the PyTorch model itself produces non-finite logits on `sample`.
        EngineUnavailableError: onnxruntime is not installed, so parity cannot be verified.
    """
    path = Path(path)
    _check_sample(sample)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not (value >= 0 and math.isfinite(value)):
            raise ExportError(f"{name} must be a finite number >= 0, got {value!r}")

    # A second batch of another size proves the exported batch axis is really dynamic.
    alt = sample[:1] if sample.shape[0] > 1 else sample.repeat(2, 1, 1, 1)

    # Remember every submodule's flag: model.train(flag) would flatten mixed modes.
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        result = _export_and_verify(
            model, sample, alt, path, opset=opset, dynamo=dynamo, tol=(float(atol), float(rtol))
        )
    finally:
        for module, training in modes.items():
            module.training = training

    logger.info(
        "exported %s to %s (%s, opset %d, max_abs_diff %.3g)",
        type(model).__name__,
        path,
        result.exporter,
        result.opset,
        result.max_abs_diff,
    )
    return result


def _export_and_verify(
    model: nn.Module,
    sample: torch.Tensor,
    alt: torch.Tensor,
    path: Path,
    *,
    opset: int,
    dynamo: bool,
    tol: tuple[float, float],
) -> OnnxExport:
    """Export the eval-mode `model` next to `path`, check the file and its parity with PyTorch
    on `sample` and `alt` (another batch size), then move it to `path`."""
    device = _model_device(model)
    example = sample.detach().to(device)
    with torch.no_grad():
        ref = _torch_logits(model, example)
        ref_alt = _torch_logits(model, alt.detach().to(device))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Export into a private temp folder next to `path`: stray side files (external data)
    # are detectable there, and a failed export never replaces a good file at `path`.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".segshield-export-") as tmp:
        tmp_path = Path(tmp) / path.name
        start = time.perf_counter()
        exporter = _export(model, example, tmp_path, opset=opset, dynamo=dynamo)
        seconds = time.perf_counter() - start
        actual_opset = _check_onnx_file(tmp_path)
        max_abs_diff = _parity(
            tmp_path,
            [(sample.detach().cpu().numpy(), ref), (alt.detach().cpu().numpy(), ref_alt)],
        )
        if math.isnan(max_abs_diff):
            raise ExportError(
                f"ONNX export of {type(model).__name__} produces non-finite logits in "
                f"ONNX Runtime where PyTorch's are finite (exporter={exporter})"
            )
        atol, rtol = tol
        scale = max(float(np.abs(ref).max(initial=0.0)), float(np.abs(ref_alt).max(initial=0.0)))
        tolerance = atol + rtol * scale
        if max_abs_diff > tolerance:
            raise ExportError(
                f"ONNX export of {type(model).__name__} disagrees with PyTorch: "
                f"max |onnxruntime - pytorch| = {max_abs_diff:.3g} exceeds tolerance "
                f"{tolerance:.3g} = atol {atol:g} + rtol {rtol:g} x logit scale {scale:.3g} "
                f"(exporter={exporter}, opset={actual_opset}; raise parity_atol/parity_rtol "
                "in the settings if this difference is expected)"
            )
        digest = sha256_file(tmp_path)
        os.replace(tmp_path, path)
    return OnnxExport(
        path=path,
        sha256=digest,
        opset=actual_opset,
        exporter=exporter,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        max_abs_diff=max_abs_diff,
        tolerance=tolerance,
        parity_batch=int(sample.shape[0]),
        seconds=seconds,
        logit_scale=scale,
        atol=atol,
        rtol=rtol,
    )


def _check_sample(sample: torch.Tensor) -> None:
    if not isinstance(sample, torch.Tensor):
        raise ExportError(f"sample must be a torch.Tensor, got {type(sample).__name__}")
    if sample.ndim != 4 or sample.shape[0] < 1:
        raise ExportError(
            f"sample must have shape (N,C,H,W) with N >= 1, got {tuple(sample.shape)}"
        )
    if sample.dtype != torch.float32:
        raise ExportError(f"sample must be float32 images in [0,1], got dtype {sample.dtype}")
    if not bool(torch.isfinite(sample).all()):
        raise ExportError("sample contains NaN or Inf values")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _torch_logits(model: nn.Module, batch: torch.Tensor) -> np.ndarray:
    """Run `model` once; return float32 (N,K,H,W) logits as numpy, checked finite."""
    out = model(batch)
    if not isinstance(out, torch.Tensor):
        raise ExportError(
            f"{type(model).__name__} must return one logits tensor (N,K,H,W) to be exported, "
            f"got {type(out).__name__}"
        )
    if out.ndim != 4 or out.shape[0] != batch.shape[0]:
        raise ExportError(
            f"{type(model).__name__} must return logits (N,K,H,W) with N={batch.shape[0]}, "
            f"got shape {tuple(out.shape)}"
        )
    logits = out.detach().float().cpu().numpy()
    bad = int(np.size(logits) - np.count_nonzero(np.isfinite(logits)))
    if bad:
        raise ModelOutputError(
            f"engine 'pytorch' produced {bad} non-finite logits on the export sample; "
            "refusing to export a model that is already broken"
        )
    return logits


def _export(
    model: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamo: bool
) -> Exporter:
    """Export to `path` (alone in its folder); return the exporter that succeeded."""
    if dynamo:
        try:
            _export_dynamo(model, example, path, opset)
            return "dynamo"
        except Exception as exc:  # any exporter failure is worth one TorchScript retry
            logger.warning(
                "dynamo ONNX export of %s failed (%s: %s); falling back to the TorchScript "
                "exporter",
                type(model).__name__,
                type(exc).__name__,
                _first_line(exc),
            )
            _clear_folder(path.parent)
            dynamo_error: Exception | None = exc
    else:
        dynamo_error = None
    try:
        _export_torchscript(model, example, path, opset)
    except Exception as exc:
        tried = "dynamo and TorchScript exporters" if dynamo_error else "TorchScript exporter"
        detail = f"; dynamo error: {_first_line(dynamo_error)}" if dynamo_error else ""
        raise ExportError(
            f"ONNX export of {type(model).__name__} failed with the {tried}: "
            f"{type(exc).__name__}: {_first_line(exc)}{detail}"
        ) from exc
    return "torchscript"


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    # Positional (tuple) dynamic_shapes: independent of the forward() argument's name.
    batch = torch.export.Dim(BATCH_AXIS_NAME)
    # torch logs one warning per torchvision op it cannot register ("torchvision is not
    # installed"): irrelevant to segmentation models, so quiet that logger during export.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        _export_dynamo_quiet(model, example, path, opset, batch)
    finally:
        registration.setLevel(level)


def _export_dynamo_quiet(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, batch: object
) -> None:
    with warnings.catch_warnings():
        # torch's own pytree internals emit this deprecation during export; not actionable.
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one file: the .onnx is the artifact that gets hashed
            dynamic_shapes=({0: batch},),
            verbose=False,  # otherwise the exporter prints progress lines to stdout
        )


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        # The legacy exporter is used on purpose here; its deprecation notice is noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: BATCH_AXIS_NAME}, OUTPUT_NAME: {0: BATCH_AXIS_NAME}},
        )


def _check_onnx_file(path: Path) -> int:
    """Checker + structure: single file, one input/output named as promised, dynamic batch.

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
    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise ExportError("exported file declares no default-domain (ai.onnx) opset")


def _parity(path: Path, cases: list[tuple[np.ndarray, np.ndarray]]) -> float:
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


def _clear_folder(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_file():
            item.unlink()


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


__all__ = ["OnnxExport", "onnx_from_torch"]
