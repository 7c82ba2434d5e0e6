"""Build engines: export once, build each named engine through its backend, measure parity.

`build_engines(["pytorch", "ort-fp32", "ort-int8"], model, calib, out_dir, sample=images)`
exports the FP32 ONNX file once, derives every requested engine from it (or from the PyTorch
model for AOTInductor), loads each one through its `Runner`, and measures clean parity against
the FP32 PyTorch source on `sample` (real images). One engine failing never stops the others:
its record says `status="error"` with the message, and engines this machine cannot run (no
GPU, no TensorRT) come back `status="unavailable"` with the reason — never a silent CPU
fallback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.engines.backends import BuildFailed, BuildResult, get_backend
from segshield.engines.base import Runner, infer_batched
from segshield.engines.health import (
    DEFAULT_FAILED_BELOW,
    DEFAULT_OK_MIN,
    HealthThresholds,
)
from segshield.engines.parity import parity_stats
from segshield.engines.records import EngineRecord
from segshield.engines.registry import ENGINE_SPECS, EngineSpec, resolve_engine_names
from segshield.engines.sample_parity import PARITY_BATCH, check_sample, source_logits
from segshield.enums import Status
from segshield.errors import EngineUnavailableError, SegShieldError
from segshield.exporters.calibration import CALIBRATION_METHODS
from segshield.lazy import installed_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of the engine builds (all recorded in the manifest).

    opset/export_atol/export_rtol: FP32 ONNX export check (see `onnx_from_torch`: |ORT - torch|
    <= atol + rtol * max|logit|, so the check means the same for any logit scale). threshold /
    activation: how logits become masks for parity ("sigmoid" | "softmax"; None: sigmoid for
    one channel, else softmax). health_ok_min / health_failed_below: mask agreement with the
    source an engine needs to be healthy (`segshield.engines.health`). calibration_*: static
    INT8 (method "minmax" | "entropy" | "percentile", images per calibration batch, a
    provenance label such as "bundled:nuclei/train").
    int8_per_channel/int8_preprocess: ORT quantization. aoti_max_batch: largest batch of the
    AOTInductor packages. cuda_device: GPU index for CUDA/TensorRT engines. trt_*: TensorRT
    optimisation profile and workspace; trt_engine_cache: ORT-TensorRT engine cache on disk.
    ort_intra_op_threads: ONNX Runtime intra-op threads (None: ORT's default, all cores).
    """

    opset: int = 18
    export_atol: float = 1e-4
    export_rtol: float = 1e-5
    threshold: float = 0.5
    activation: str | None = None
    health_ok_min: float = DEFAULT_OK_MIN
    health_failed_below: float = DEFAULT_FAILED_BELOW
    calibration_method: str = "minmax"
    calibration_batch_size: int = 8
    calibration_source: str | None = None
    int8_per_channel: bool = True
    int8_preprocess: bool = True
    # "auto": when the static INT8 engine is not healthy on the calibration images, search the
    # standard mitigations (exporters/int8_search.py); "off": keep the first recipe as it is
    int8_search: str = "auto"
    aoti_max_batch: int = 64
    cuda_device: int = 0
    trt_opt_batch: int = 8
    trt_max_batch: int = 32
    trt_workspace_mib: int = 1024
    trt_engine_cache: bool = True
    ort_intra_op_threads: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.calibration_method not in CALIBRATION_METHODS:
            problems.append(
                f"calibration_method must be one of {CALIBRATION_METHODS}, got "
                f"{self.calibration_method!r}"
            )
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        for name in ("calibration_batch_size", "aoti_max_batch", "trt_opt_batch", "trt_max_batch"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.trt_opt_batch > self.trt_max_batch:
            problems.append("trt_opt_batch must be <= trt_max_batch")
        if self.int8_search not in ("auto", "off"):
            problems.append(f"int8_search must be auto or off, got {self.int8_search!r}")
        if self.activation not in (None, "sigmoid", "softmax"):
            problems.append(f"activation must be sigmoid or softmax, got {self.activation!r}")
        try:
            self.health()
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))

    def health(self) -> HealthThresholds:
        """The engine health thresholds of these options."""
        return HealthThresholds(self.health_ok_min, self.health_failed_below)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildOptions:
        """Rebuild from `to_dict()` output; unknown keys (newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class BuildInfo:
    """Facts shared by all engines of one `build_engines` call (written once in the manifest)."""

    model_class: str
    model_fingerprint: str
    model_parameters: int
    sample: dict[str, Any]
    calibration: dict[str, Any] | None
    options: dict[str, Any]
    onnx_export: dict[str, Any] | None
    out_dir: str
    versions: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuiltEngine:
    """A built engine: its runner (None unless status is "ok") and its record."""

    record: EngineRecord
    runner: Runner | None = None
    info: BuildInfo | None = None

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def ok(self) -> bool:
        return self.record.status == Status.OK and self.runner is not None


class BuildContext:
    """State shared by the builds of one call: model, images, options, the FP32 ONNX export.

    model: FP32 source, eval mode. calibration: float32 (N,C,H,W) in [0,1] or None.
    sample: float32 (N,C,H,W) in [0,1], the parity images. out_dir: resolved build folder.
    """

    def __init__(
        self,
        model: nn.Module,
        calibration: np.ndarray | None,
        out_dir: Path,
        sample: np.ndarray,
        options: BuildOptions,
    ) -> None:
        self.model = model
        self.calibration = calibration
        self.out_dir = out_dir
        self.sample = sample
        self.options = options
        self.source_logits = source_logits(model, sample)
        self.onnx_export: Any = None  # an OnnxExport once exported
        self.onnx_error: str | None = None

    def export_onnx(self) -> None:
        """Export the FP32 ONNX file once; later calls reuse it (or its error)."""
        if self.onnx_export is not None or self.onnx_error is not None:
            return
        from segshield.exporters.onnx import onnx_from_torch

        try:
            self.onnx_export = onnx_from_torch(
                self.model,
                torch.from_numpy(self.sample[:2].copy()),
                self.out_dir / "model.onnx",
                opset=self.options.opset,
                atol=self.options.export_atol,
                rtol=self.options.export_rtol,
            )
        except SegShieldError as exc:
            self.onnx_error = f"FP32 ONNX export failed: {exc}"
            logger.error(self.onnx_error)

    def onnx_path(self) -> Path:
        """The shared FP32 ONNX file; raises BuildFailed with the export error."""
        self.export_onnx()
        if self.onnx_export is None:
            raise BuildFailed(self.onnx_error or "FP32 ONNX export failed")
        return Path(self.onnx_export.path)

    def engine_dir(self, name: str) -> Path:
        """The engine's own sub-folder of out_dir (created)."""
        path = self.out_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# ------------------------------------------------------------------------------ build API


def build_engine(
    name: str,
    model: nn.Module,
    calibration_images: np.ndarray | None,
    out_dir: str | os.PathLike[str],
    *,
    sample: np.ndarray,
    options: BuildOptions | None = None,
) -> BuiltEngine:
    """Build one engine; see `build_engines`. Never raises for the engine failing."""
    return build_engines(
        [name], model, calibration_images, out_dir, sample=sample, options=options
    )[0]


def build_engines(
    names: Sequence[str],
    model: nn.Module,
    calibration_images: np.ndarray | None,
    out_dir: str | os.PathLike[str],
    *,
    sample: np.ndarray,
    options: BuildOptions | None = None,
) -> list[BuiltEngine]:
    """Build the named engines into `out_dir`; one record per engine, in order.

    Args:
        names: engine names from ENGINE_SPECS (aliases in ENGINE_ALIASES accepted).
        model: the FP32 PyTorch source model, float32 (N,C,H,W) in [0,1] -> (N,K,H,W) logits.
            Put in eval mode; not moved.
        calibration_images: real float32 (N,C,H,W) images in [0,1] for INT8 calibration (the
            audit dataset's training split — never random noise); None if no INT8 engine.
        out_dir: folder for model.onnx (exported once, shared) and one sub-folder per engine.
        sample: real float32 (N,C,H,W) images (e.g. the audit's test images) for the clean
            parity of every engine against the source (`parity_stats`); its first two images
            are also the ONNX export example.
        options: BuildOptions.

    Returns one BuiltEngine per name with status "ok" (runner loaded, parity measured),
    "unavailable" (this machine cannot run it; reason says why) or "error" (message).

    Raises:
        ValueError: unknown engine name. DataError: `sample`/`calibration_images` are not
            real-image batches of the same (C,H,W) in [0,1].
    """
    from segshield.exporters.calibration import check_calibration_images

    options = options or BuildOptions()
    resolved = resolve_engine_names(names)
    sample_arr = check_sample(sample)
    calib = None
    if calibration_images is not None:
        calib = check_calibration_images(calibration_images, tuple(sample_arr.shape[1:]))
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    ctx = BuildContext(model, calib, out, sample_arr, options)

    specs = [ENGINE_SPECS[n] for n in resolved]
    reasons = {s.name: s.unavailable_reason() for s in specs}
    if any(s.needs_onnx and reasons[s.name] is None for s in specs):
        ctx.export_onnx()  # once, before the per-engine timers start
    info = _build_info(ctx)
    return [_build_one(ctx, spec, reasons[spec.name], info) for spec in specs]


def _build_info(ctx: BuildContext) -> BuildInfo:
    from segshield.exporters.calibration import images_digest

    model, sample, calib, options = ctx.model, ctx.sample, ctx.calibration, ctx.options
    return BuildInfo(
        model_class=type(model).__name__,
        model_fingerprint=model_fingerprint(model),
        model_parameters=int(sum(p.numel() for p in model.parameters())),
        sample={"n_images": len(sample), "shape": list(sample.shape),
                "sha256": images_digest(sample)},
        calibration=None if calib is None else {
            "n_images": len(calib), "shape": list(calib.shape), "sha256": images_digest(calib),
            "method": options.calibration_method, "source": options.calibration_source,
        },
        options=options.to_dict(),
        onnx_export=ctx.onnx_export.to_dict() if ctx.onnx_export is not None else (
            {"error": ctx.onnx_error} if ctx.onnx_error else None),
        out_dir=str(ctx.out_dir),
        versions=_versions(),
    )  # fmt: skip


def _apply(record: EngineRecord, result: BuildResult) -> None:
    """Copy what a backend built into the engine's record."""
    record.artifacts = list(result.artifacts)
    record.notes = list(result.notes)
    record.details = dict(result.details)


def _build_one(
    ctx: BuildContext, spec: EngineSpec, reason: str | None, info: BuildInfo
) -> BuiltEngine:
    record = EngineRecord(spec.name, spec.backend, spec.precision, spec.device)
    if reason is not None:
        record.status, record.reason = Status.UNAVAILABLE, reason
        logger.info("engine %s unavailable: %s", spec.name, reason)
        return BuiltEngine(record, None, info)
    backend = get_backend(spec.backend)
    start = time.perf_counter()
    runner: Runner | None = None
    try:
        _apply(record, backend.build(ctx, spec))
        runner = backend.load(spec, record, ctx.model, ctx.options)
        record.build_seconds = round(time.perf_counter() - start, 3)
        record.providers = list(runner.providers)
        logits = infer_batched(runner, ctx.sample, PARITY_BATCH)
        record.parity = parity_stats(
            ctx.source_logits, logits, ctx.options.threshold, ctx.options.activation
        )
    except EngineUnavailableError as exc:
        record.status, record.reason, runner = Status.UNAVAILABLE, str(exc), None
        logger.warning("engine %s unavailable: %s", spec.name, exc)
    except Exception as exc:  # one engine failing must not lose the others
        message = str(exc) if isinstance(exc, BuildFailed) else f"{type(exc).__name__}: {exc}"
        record.status, record.reason, runner = Status.ERROR, message, None
        logger.error("engine %s failed: %s", spec.name, record.reason)
        logger.debug("engine %s traceback", spec.name, exc_info=True)
    if record.build_seconds is None:
        record.build_seconds = round(time.perf_counter() - start, 3)
    return BuiltEngine(record, runner, info)


def load_engine(
    record: EngineRecord, model: nn.Module | None, options: BuildOptions | None = None
) -> Runner:
    """Load the runner of a built engine from its record (artifact paths must be absolute).

    Raises ValueError (unknown engine), EngineUnavailableError (cannot run here), or the
    backend's load error.
    """
    spec = ENGINE_SPECS[resolve_engine_names([record.name])[0]]
    reason = spec.unavailable_reason()
    if reason:
        raise EngineUnavailableError(reason)
    return get_backend(spec.backend).load(spec, record, model, options or BuildOptions())


# --------------------------------------------------------------------------------- helpers


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's state dict (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _versions() -> dict[str, Any]:
    import platform
    import sys

    import segshield

    versions: dict[str, Any] = {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_threads": os.cpu_count(),
    }
    for module in ("onnxruntime", "onnx"):
        versions[module] = installed_version(module)
    return versions


__all__ = [
    "CALIBRATION_METHODS",
    "BuildContext",
    "BuildInfo",
    "BuildOptions",
    "BuiltEngine",
    "build_engine",
    "build_engines",
    "load_engine",
    "model_fingerprint",
]
