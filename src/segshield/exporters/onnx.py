"""Export a PyTorch segmentation model to a single ONNX file and prove it still agrees.

`onnx_from_torch` follows Polygraphy's loader naming (`XFromY`). An export is only returned
after three checks: `onnx.checker`, a structural check (one self-contained file, names,
dynamic batch axis, dynamic height/width where asked) and numerical parity against PyTorch on
ONNX Runtime (CPU) at two batch sizes and, for dynamic height/width, at a second image size.
A model whose export with dynamic height/width fails (a fixed-size layer, an exporter limit)
is exported with fixed height/width and a note. A failed export never leaves a file at the
requested path.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from segshield.errors import ExportError, ModelOutputError
from segshield.exporters.onnx_verify import (
    HW_AXIS_NAMES,
    INPUT_NAME,
    OUTPUT_NAME,
    check_onnx_file,
    check_sample,
    name_hw_axes,
    ort_parity,
)
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

BATCH_AXIS_NAME = "batch"
# Bump when the exported graph changes (dynamic height/width came with 2): engine caches key
# on it, so engines built from an older export are rebuilt.
EXPORT_FORMAT = 2

Exporter = Literal["dynamo", "torchscript"]


@dataclass(frozen=True)
class OnnxExport:
    """A verified ONNX export.

    `max_abs_diff` is the largest |ONNX Runtime − PyTorch| logit difference over the parity
    batches, `logit_scale` the largest |PyTorch logit| there and `tolerance` the bound that was
    applied, ``atol + rtol * logit_scale``; `parity_batch` is the size of the main parity
    batch (the `sample`); a second batch of another size is also compared. `seconds` is the
    wall time of the export call. `dynamic_hw`: height and width are symbolic (verified at
    every size in `checked_hw`); False with a note in `notes` when that export failed.
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
    dynamic_hw: bool = False
    checked_hw: tuple[tuple[int, int], ...] = ()
    notes: tuple[str, ...] = ()
    format: int = EXPORT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (path as a string, tuples as lists)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["checked_hw"] = [list(hw) for hw in self.checked_hw]
        data["notes"] = list(self.notes)
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
    dynamic_hw: bool = True,
) -> OnnxExport:
    """Export `model` to one self-contained ONNX file at `path` with a dynamic batch axis
    (and dynamic height/width where the model allows).

    Args:
        model: segmentation model mapping float32 (N,C,H,W) images in [0,1] to (N,K,H,W)
            logits (or volumes (N,C,D,H,W) to (N,K,D,H,W)). It is exported in eval mode; its
            train/eval flags are restored afterwards.
        sample: real input images, float32 (N,C,H,W) or (N,C,D,H,W), N >= 1. Used for
            tracing and parity. Volumes export with fixed D/H/W (``dynamic_hw`` ignored).
        path: destination `.onnx` file (parent folders are created; overwritten on success).
        opset: ONNX default-domain opset to target.
        dynamo: try the `torch.export`-based exporter first; on failure fall back to the
            TorchScript exporter with a warning. `False` uses TorchScript directly.
        atol, rtol: the largest accepted |ONNX Runtime − PyTorch| logit difference is
            ``atol + rtol * max|PyTorch logit|``: FP32 kernels differ by a relative ~1e-7, so
            a fixed absolute bound would reject a correct export of a model whose logits span
            ±1000 while accepting a broken one whose logits span ±0.01.
        dynamic_hw: also make height and width symbolic, verified at the sample's size and at
            twice it (valid for any U-Net whose sizes must be divisible by 2^depth). When
            that export or check fails, the export falls back to fixed height/width and says
            why in `OnnxExport.notes`.

    Raises:
        ExportError: bad sample/model output, export or checker failure, or parity above the
            tolerance.
        ModelOutputError: the PyTorch model itself produces non-finite logits on `sample`.
        EngineUnavailableError: onnxruntime is not installed, so parity cannot be verified.
    """
    path = Path(path)
    check_sample(sample)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not (value >= 0 and math.isfinite(value)):
            raise ExportError(f"{name} must be a finite number >= 0, got {value!r}")

    # A second batch of another size proves the exported batch axis is really dynamic.
    alt = sample[:1] if sample.shape[0] > 1 else sample.repeat(2, *([1] * (sample.ndim - 1)))
    # Volumes (N,C,D,H,W) export with a fixed D/H/W: an audit feeds them at one size.
    dynamic_hw = dynamic_hw and sample.ndim == 4

    # Remember every submodule's flag: model.train(flag) would flatten mixed modes.
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        result = _export_and_verify(
            model, sample, alt, path, opset=opset, dynamo=dynamo,
            tol=(float(atol), float(rtol)), dynamic_hw=dynamic_hw,
        )  # fmt: skip
    finally:
        for module, training in modes.items():
            module.training = training

    logger.info(
        "exported %s to %s (%s, opset %d, %s height/width, max_abs_diff %.3g)",
        type(model).__name__,
        path,
        result.exporter,
        result.opset,
        "dynamic" if result.dynamic_hw else "fixed",
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
    dynamic_hw: bool,
) -> OnnxExport:
    """Export with dynamic height/width if asked (falling back to fixed with a note), check
    the file and its parity with PyTorch, then move it to `path`."""
    device = _model_device(model)
    example = sample.detach().to(device)
    with torch.no_grad():
        cases = [
            (sample, _torch_logits(model, example)),
            (alt, _torch_logits(model, alt.to(device))),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if dynamic_hw:
        # Twice the size keeps every divisibility a U-Net needs (H, W divisible by 2^depth).
        other = _resized(sample[:1], 2)
        try:
            with torch.no_grad():
                cases.append((other, _torch_logits(model, other.to(device))))
        except Exception as exc:  # the model itself only takes one size
            notes.append(
                f"fixed height/width: the model fails at {_hw(other)} ({_first_line(exc)})"
            )
    if dynamic_hw and not notes:
        try:
            # Only the chosen exporter: a dynamo failure here is retried with dynamo, fixed.
            return _verified(model, example, cases, path, opset=opset, exporters=(dynamo,),
                             tol=tol, dynamic_hw=True)  # fmt: skip
        except ExportError as exc:
            notes.append(f"fixed height/width: export with dynamic height/width failed ({exc})")
    if notes:
        logger.warning("%s: %s", type(model).__name__, notes[0])
    exporters = (True, False) if dynamo else (False,)
    result = _verified(model, example, cases[:2], path, opset=opset, exporters=exporters, tol=tol,
                       dynamic_hw=False)  # fmt: skip
    return replace(result, notes=tuple(notes))


def _verified(
    model: nn.Module,
    example: torch.Tensor,
    cases: list[tuple[torch.Tensor, np.ndarray]],
    path: Path,
    *,
    opset: int,
    exporters: tuple[bool, ...],
    tol: tuple[float, float],
    dynamic_hw: bool,
) -> OnnxExport:
    """Export (trying `exporters` in order: True dynamo, False TorchScript) next to `path`,
    check the file and its parity on every (images, PyTorch logits) case, move it to `path`."""
    # Export into a private temp folder next to `path`: stray side files (external data)
    # are detectable there, and a failed export never replaces a good file at `path`.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".segshield-export-") as tmp:
        tmp_path = Path(tmp) / path.name
        start = time.perf_counter()
        exporter = _export(model, example, tmp_path, opset=opset, exporters=exporters,
                           dynamic_hw=dynamic_hw)  # fmt: skip
        seconds = time.perf_counter() - start
        if dynamic_hw:
            name_hw_axes(tmp_path)
        actual_opset = check_onnx_file(tmp_path, dynamic_hw)
        max_abs_diff = ort_parity(tmp_path, [(x.detach().cpu().numpy(), ref) for x, ref in cases])
        if math.isnan(max_abs_diff):
            raise ExportError(
                f"ONNX export of {type(model).__name__} produces non-finite logits in "
                f"ONNX Runtime where PyTorch's are finite (exporter={exporter})"
            )
        atol, rtol = tol
        scale = max(float(np.abs(ref).max(initial=0.0)) for _, ref in cases)
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
        parity_batch=int(example.shape[0]),
        seconds=seconds,
        logit_scale=scale,
        atol=atol,
        rtol=rtol,
        dynamic_hw=dynamic_hw,
        checked_hw=tuple(sorted({_hw(x) for x, _ in cases})),
    )


def _resized(images: torch.Tensor, factor: int) -> torch.Tensor:
    """`images` (N,C,H,W) in [0,1] resampled to (N,C,factor*H,factor*W): real content at a
    size the export never saw."""
    size = (images.shape[2] * factor, images.shape[3] * factor)
    out = torch.nn.functional.interpolate(images.detach().float(), size=size, mode="bilinear")
    return out.clamp_(0.0, 1.0)


def _hw(images: torch.Tensor) -> tuple[int, int]:
    return int(images.shape[2]), int(images.shape[3])


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
    if out.ndim != batch.ndim or out.shape[0] != batch.shape[0]:
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
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    opset: int,
    exporters: tuple[bool, ...],
    dynamic_hw: bool,
) -> Exporter:
    """Export to `path` (alone in its folder) with the first of `exporters` (True: dynamo,
    False: TorchScript) that succeeds; return its name."""
    errors: list[str] = []
    last: Exception | None = None
    for use_dynamo in exporters:
        name: Exporter = "dynamo" if use_dynamo else "torchscript"
        try:
            if use_dynamo:
                _export_dynamo(model, example, path, opset, dynamic_hw=dynamic_hw)
            else:
                _export_torchscript(model, example, path, opset, dynamic_hw=dynamic_hw)
            return name
        except Exception as exc:  # any exporter failure is worth trying the next one
            errors.append(f"{name}: {type(exc).__name__}: {_first_line(exc)}")
            last = exc
            _clear_folder(path.parent)
            if use_dynamo and len(exporters) > 1:
                logger.warning(
                    "dynamo ONNX export of %s failed (%s); falling back to the TorchScript "
                    "exporter",
                    type(model).__name__,
                    errors[-1],
                )
    tried = " and ".join(("dynamo" if d else "TorchScript") for d in exporters)
    raise ExportError(
        f"ONNX export of {type(model).__name__} failed with the {tried} exporter"
        f"{'s' if len(exporters) > 1 else ''}: " + "; ".join(errors)
    ) from last


def _export_dynamo(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, *, dynamic_hw: bool = False
) -> None:
    # Positional (tuple) dynamic_shapes: independent of the forward() argument's name.
    dims: dict[int, Any] = {0: torch.export.Dim(BATCH_AXIS_NAME)}
    if dynamic_hw:
        # DYNAMIC, not a named Dim: torch.export derives the divisibility a U-Net needs.
        dims |= {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    # torch logs one warning per torchvision op it cannot register ("torchvision is not
    # installed"): irrelevant to segmentation models, so quiet that logger during export.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        _export_dynamo_quiet(model, example, path, opset, dims)
    finally:
        registration.setLevel(level)


def _export_dynamo_quiet(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, dims: dict[int, Any]
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
            dynamic_shapes=(dims,),
            verbose=False,  # otherwise the exporter prints progress lines to stdout
        )


def _export_torchscript(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, *, dynamic_hw: bool = False
) -> None:
    axes = {0: BATCH_AXIS_NAME}
    if dynamic_hw:
        axes |= {2: HW_AXIS_NAMES[0], 3: HW_AXIS_NAMES[1]}
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
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )


def _clear_folder(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_file():
            item.unlink()


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


__all__ = ["EXPORT_FORMAT", "INPUT_NAME", "OUTPUT_NAME", "OnnxExport", "onnx_from_torch"]
