"""The "tensorrt" backend: native TensorRT engines (`.plan`) built from the FP32 ONNX export.

tensorrt is imported only when an engine is built or loaded (see `segshield.lazy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from segshield.engines.backends import (
    BuildFailed,
    BuildResult,
    add_calibration_overlap,
    primary_path,
)
from segshield.engines.records import Artifact
from segshield.lazy import tensorrt_unavailable_reason

if TYPE_CHECKING:
    from torch import nn

    from segshield.engines.base import Runner
    from segshield.engines.build import BuildContext, BuildOptions
    from segshield.engines.records import EngineRecord
    from segshield.engines.registry import EngineSpec


class TensorRTBackend:
    """TensorRT in `spec.precision` ("fp32", "fp16", "int8" with an entropy calibrator)."""

    name = "tensorrt"

    def available(self, spec: EngineSpec) -> str | None:
        return tensorrt_unavailable_reason()

    def build(self, ctx: BuildContext, spec: EngineSpec) -> BuildResult:
        from segshield.exporters.tensorrt import tensorrt_engine_from_onnx

        int8 = spec.precision == "int8"
        if int8 and ctx.calibration is None:
            raise BuildFailed(
                f"{spec.name} needs calibration images (real images, e.g. train split)"
            )
        with torch.cuda.device(ctx.options.cuda_device):
            built = tensorrt_engine_from_onnx(
                ctx.onnx_path(),
                ctx.engine_dir(spec.name) / "model.plan",
                precision=spec.precision,
                calibration_images=ctx.calibration if int8 else None,
                opt_batch=ctx.options.trt_opt_batch,
                max_batch=ctx.options.trt_max_batch,
                workspace_mib=ctx.options.trt_workspace_mib,
                input_chw=tuple(int(d) for d in ctx.sample.shape[1:]),
            )
        result = BuildResult(
            [Artifact.of("plan", built.path)], details={"tensorrt": built.to_dict()}
        )
        if built.calibration:
            cache = Path(built.calibration["cache"])
            if cache.is_file():
                result.artifacts.append(Artifact.of("calibration-cache", cache))
            add_calibration_overlap(ctx, result)
        result.notes.append(
            f"native TensorRT {built.tensorrt_version} engine, profile batch 1/{built.opt_batch}/"
            f"{built.max_batch}; valid only for this GPU model and TensorRT version"
            + (
                "; INT8 via IInt8EntropyCalibrator2 on the calibration images"
                if built.calibration
                else ""
            )
        )
        return result

    def load(
        self,
        spec: EngineSpec,
        record: EngineRecord,
        model: nn.Module | None,
        options: BuildOptions,
    ) -> Runner:
        from segshield.engines.tensorrt_runner import TensorRTRunner

        path = primary_path(spec, record, ".plan")
        return TensorRTRunner(
            path,
            precision=spec.precision,
            device=f"cuda:{options.cuda_device}",
            name=spec.name,
        )


BACKEND = TensorRTBackend()

__all__ = ["BACKEND", "TensorRTBackend"]
