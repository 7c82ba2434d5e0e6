"""Backends: how an engine of each `EngineSpec.backend` is checked, built and loaded.

A backend reads only spec fields (precision, device, provider, onnx_graph), never the engine
name. `build` RETURNS what it made (`BuildResult`); `segshield.engines.build` turns that into
the `EngineRecord`. Backend modules are imported on first use by `get_backend`, and each
imports its heavy library (onnxruntime, torch._inductor, tensorrt) only inside build/load.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from segshield.engines.records import Artifact
from segshield.errors import SegShieldError

if TYPE_CHECKING:
    from torch import nn

    from segshield.engines.base import Runner
    from segshield.engines.build import BuildContext, BuildOptions
    from segshield.engines.records import EngineRecord
    from segshield.engines.registry import EngineSpec

# spec.backend -> module defining BACKEND; imported lazily (see module docstring).
_MODULES: dict[str, str] = {
    "pytorch": "segshield.engines.backends.torch",
    "onnxruntime": "segshield.engines.backends.ort",
    "aoti": "segshield.engines.backends.aoti",
    "tensorrt": "segshield.engines.backends.tensorrt",
}


class BuildFailed(SegShieldError):
    """A build step failed in a way already explained by its message (recorded verbatim)."""


@dataclass
class BuildResult:
    """What a backend built for one engine.

    artifacts: files, the one the runner executes first. notes: report-ready sentences.
    details: facts the loader and reports need (input size, batch limits, calibration).
    """

    artifacts: list[Artifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """One inference backend (pytorch, onnxruntime, aoti, tensorrt)."""

    name: str

    def available(self, spec: EngineSpec) -> str | None:
        """None if `spec` can run on this machine, else why not. Cheap: builds nothing."""
        ...

    def build(self, ctx: BuildContext, spec: EngineSpec) -> BuildResult:
        """Build the engine's artifacts under `ctx.engine_dir(spec.name)`.

        Raises BuildFailed (message recorded as is), EngineUnavailableError, or anything
        else (recorded as "Type: message").
        """
        ...

    def load(
        self,
        spec: EngineSpec,
        record: EngineRecord,
        model: nn.Module | None,
        options: BuildOptions,
    ) -> Runner:
        """A runner for a built engine; `record` artifact paths must be absolute."""
        ...


_LOADED: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend named `name` (an `EngineSpec.backend`). Raises KeyError if unknown."""
    if name not in _LOADED:
        if name not in _MODULES:
            raise KeyError(f"unknown engine backend {name!r}; known: {sorted(_MODULES)}")
        _LOADED[name] = importlib.import_module(_MODULES[name]).BACKEND
    return _LOADED[name]


def add_calibration_overlap(ctx: BuildContext, result: BuildResult) -> None:
    """Record how many parity images are also calibration images (parity is then optimistic)."""
    if ctx.calibration is None:
        return
    calib = {hashlib.sha256(img.tobytes()).digest() for img in ctx.calibration}
    shared = sum(hashlib.sha256(img.tobytes()).digest() in calib for img in ctx.sample)
    result.details["parity_images_in_calibration"] = int(shared)
    if shared:
        result.notes.append(
            f"{shared} of {len(ctx.sample)} parity images are also calibration images: "
            "parity is optimistic; calibrate on the training split, measure on the test split"
        )


def primary_path(spec: EngineSpec, record: EngineRecord, what: str) -> str:
    """The path of the file a runner executes; BuildFailed naming `what` when there is none."""
    if record.primary is None:
        raise BuildFailed(f"engine {spec.name} has no {what} artifact")
    return record.primary.path


def cuda_device(spec: EngineSpec, options: BuildOptions) -> str:
    """The torch device string of `spec`: "cpu", or "cuda:<options.cuda_device>"."""
    return "cpu" if spec.device == "cpu" else f"cuda:{options.cuda_device}"


__all__ = [
    "Backend",
    "BuildFailed",
    "BuildResult",
    "add_calibration_overlap",
    "cuda_device",
    "get_backend",
    "primary_path",
]
