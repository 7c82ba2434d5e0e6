"""The "aoti" backend: AOTInductor `.pt2` packages compiled from the PyTorch model.

torch._inductor is imported only when a package is compiled (see `segshield.exporters.aoti`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from segshield.engines.aoti_runner import AotiRunner
from segshield.engines.backends import BuildResult, cuda_device, primary_path
from segshield.engines.records import Artifact

if TYPE_CHECKING:
    from torch import nn

    from segshield.engines.base import Runner
    from segshield.engines.build import BuildContext, BuildOptions
    from segshield.engines.records import EngineRecord
    from segshield.engines.registry import EngineSpec


class AotiBackend:
    """AOTInductor on `spec.device` in `spec.precision`, dynamic batch 1..aoti_max_batch."""

    name = "aoti"

    def available(self, spec: EngineSpec) -> str | None:
        from segshield.exporters.aoti import aoti_unavailable_reason

        return aoti_unavailable_reason(spec.device, spec.precision)

    def build(self, ctx: BuildContext, spec: EngineSpec) -> BuildResult:
        from segshield.exporters.aoti import aoti_from_torch, cxx_compiler

        export = aoti_from_torch(
            ctx.model,
            torch.from_numpy(ctx.sample[:2].copy()),
            ctx.engine_dir(spec.name) / "model.pt2",
            device=cuda_device(spec, ctx.options),
            precision=spec.precision,
            max_batch=ctx.options.aoti_max_batch,
        )
        compiler = f" with {cxx_compiler()}" if spec.device == "cpu" else ""
        return BuildResult(
            [Artifact.of("pt2", export.path)],
            notes=[
                f"AOTInductor: torch.export (dynamic batch 1..{export.max_batch}) then "
                f"aoti_compile_and_package{compiler}: export {export.export_seconds:.1f} s, "
                f"compile {export.compile_seconds:.1f} s (Inductor's on-disk cache, "
                "TORCHINDUCTOR_CACHE_DIR, can make a rebuild faster than a cold compile)",
                "a .pt2 holds a compiled shared library: only load packages you built",
            ],
            details={
                "input_chw": list(export.input_chw),
                "max_batch": export.max_batch,
                "export_seconds": round(export.export_seconds, 3),
                "compile_seconds": round(export.compile_seconds, 3),
                "torch_version": export.torch_version,
            },
        )

    def load(
        self,
        spec: EngineSpec,
        record: EngineRecord,
        model: nn.Module | None,
        options: BuildOptions,
    ) -> Runner:
        path = primary_path(spec, record, ".pt2")
        chw = record.details.get("input_chw")
        return AotiRunner(
            path,
            device=cuda_device(spec, options),
            precision=spec.precision,
            input_chw=tuple(chw) if chw else None,
            max_batch=int(record.details.get("max_batch", options.aoti_max_batch)),
            name=spec.name,
        )


BACKEND = AotiBackend()

__all__ = ["BACKEND", "AotiBackend"]
