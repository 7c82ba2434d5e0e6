"""Build a native TensorRT engine (`.plan`) from the verified FP32 ONNX file. Thin on purpose.

INT8 uses TensorRT's implicit quantization with an `IInt8EntropyCalibrator2` fed the same real
calibration images as the ONNX Runtime INT8 engine (deprecated from TensorRT 10.1 in favour of
explicit Q/DQ models, still supported). tensorrt is imported only when building.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segshield.errors import ExportError
from segshield.exporters.calibration import (
    check_calibration_images,
    equal_batch_size,
    images_digest,
)
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

TRT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorRTBuild:
    """A serialized TensorRT engine and how it was built (batch profile min/opt/max)."""

    path: Path
    sha256: str
    precision: str
    tensorrt_version: str
    min_batch: int
    opt_batch: int
    max_batch: int
    seconds: float
    calibration: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def tensorrt_engine_from_onnx(
    onnx_path: str | os.PathLike[str],
    plan_path: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    calibration_images: np.ndarray | None = None,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_mib: int = 1024,
    calibration_cache: str | os.PathLike[str] | None = None,
    input_chw: tuple[int, ...] | None = None,
) -> TensorRTBuild:
    """Parse `onnx_path` with TensorRT's ONNX parser and build a serialized engine.

    Args:
        onnx_path: FP32 ONNX file with one image input (N,C,H,W), dynamic batch.
        plan_path: destination `.plan`.
        precision: "fp32", "fp16" (BuilderFlag.FP16) or "int8" (BuilderFlag.INT8 + FP16,
            calibrated with `calibration_images`).
        calibration_images: float32 (N,C,H,W) real images in [0,1]; required for "int8".
        opt_batch, max_batch: optimisation profile (min 1).
        workspace_mib: builder workspace pool limit.
        calibration_cache: where the calibrator reads/writes its cache (int8).

    Raises:
        EngineUnavailableError: tensorrt or CUDA missing.
        ExportError: parsing or building fails.
    """
    from segshield.lazy import import_tensorrt, trt_logger

    trt = import_tensorrt()
    import torch

    if precision not in TRT_PRECISIONS:
        raise ExportError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {precision!r}")
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    start = time.perf_counter()
    log = trt_logger(trt)
    builder = trt.Builder(log)
    network, _parser = _parse_onnx(trt, builder, log, onnx_path)  # _parser: alive until built
    tensor = network.get_input(0)
    chw = _profile_shape(tensor, input_chw)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, (1, *chw), (opt_batch, *chw), (max_batch, *chw))
    config.add_optimization_profile(profile)

    calibration: dict[str, Any] | None = None
    calibrator = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration_images is None:
            raise ExportError("TensorRT int8 needs calibration images (real images, not noise)")
        cache = Path(calibration_cache) if calibration_cache else plan_path.with_suffix(".calib")
        calibrator, calibration = _set_int8_calibration(
            trt, torch, builder, config, tensor.name, chw, calibration_images, cache
        )

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_path.name}")
    if calibrator is not None and calibration is not None:
        calibration["images_served"] = calibrator.served
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(plan))
    return TensorRTBuild(
        path=plan_path,
        sha256=sha256_file(plan_path),
        precision=precision,
        tensorrt_version=str(trt.__version__),
        min_batch=1,
        opt_batch=opt_batch,
        max_batch=max_batch,
        seconds=time.perf_counter() - start,
        calibration=calibration,
    )


def _profile_shape(tensor: Any, input_chw: tuple[int, ...] | None) -> tuple[int, ...]:
    """The (C, H, W) of the optimisation profile: a dynamic-H/W export reads -1 from the
    network input, so the audited images' shape (``input_chw``) is used when given."""
    chw = tuple(int(d) for d in (input_chw or tensor.shape[1:]))
    if any(d < 1 for d in chw):
        raise ExportError(f"TensorRT profile needs a fixed image shape; the ONNX input is {chw}")
    return chw


def _parse_onnx(trt: Any, builder: Any, log: Any, onnx_path: Path) -> tuple[Any, Any]:
    """(network, parser) of `onnx_path` parsed by TensorRT's ONNX parser; the network must have
    one input. Keep the parser alive until the engine is built: it owns the weights."""
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {'; '.join(errors)}")
    if network.num_inputs != 1:
        raise ExportError(f"{onnx_path.name} has {network.num_inputs} inputs; expected one")
    return network, parser


def _set_int8_calibration(
    trt: Any,
    torch: Any,
    builder: Any,
    config: Any,
    input_name: str,
    chw: tuple[int, ...],
    calibration_images: np.ndarray,
    cache: Path,
) -> tuple[Any, dict[str, Any]]:
    """Turn on INT8 in `config` with an entropy calibrator over the checked real images.

    Returns the calibrator (keep it alive until the engine is built) and the calibration
    record (calibrator, n_images, batch_size, sha256, cache) of the build.
    """
    images = check_calibration_images(calibration_images, chw)
    n = len(images)
    batch = equal_batch_size(n, 8)  # uses every image
    cache.unlink(missing_ok=True)  # a stale cache would skip calibrating on these images
    calibrator = _entropy_calibrator(trt, torch, images, batch, cache)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    calib_profile = builder.create_optimization_profile()
    shape = (batch, *chw)
    calib_profile.set_shape(input_name, shape, shape, shape)
    config.set_calibration_profile(calib_profile)
    calibration = {
        "calibrator": "IInt8EntropyCalibrator2",
        "n_images": n,
        "batch_size": batch,
        "sha256": images_digest(images),
        "cache": str(cache),
    }
    return calibrator, calibration


def _entropy_calibrator(trt: Any, torch: Any, images: np.ndarray, batch: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 over `images` in order, `batch` at a time (defined lazily
    because its base class lives in tensorrt)."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.served = 0
            self.buffer = torch.empty((batch, *images.shape[1:]), dtype=torch.float32).cuda()

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + batch > len(images):
                return None
            chunk = torch.from_numpy(images[self.index : self.index + batch])
            self.buffer.copy_(chunk)
            self.index += batch
            self.served += batch
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(data))

    return _Calibrator()


__all__ = ["TRT_PRECISIONS", "TensorRTBuild", "tensorrt_engine_from_onnx"]
