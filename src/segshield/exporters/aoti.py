"""AOTInductor: compile a PyTorch model ahead of time into a `.pt2` package.

`aoti_from_torch` runs `torch.export` (dynamic batch axis via `torch.export.Dim`), then
`torch._inductor.aoti_compile_and_package`, which generates C++ (CPU) or Triton/CUDA (GPU)
kernels and builds them into a shared library inside the package. On CPU this needs a C++
compiler on PATH. The package is loaded again with `torch._inductor.aoti_load_package`
(see `segshield.engines.aoti_runner`). torch._inductor is imported only when compiling.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segshield.errors import EngineUnavailableError, ExportError
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

AOTI_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class AotiExport:
    """A compiled AOTInductor package.

    `device` is "cpu" or "cuda"; `precision` the weights/activations dtype ("fp32", "fp16",
    "bf16"); the package takes inputs of that dtype with a batch axis in
    [1, `max_batch`] and fixed (C,H,W) `input_chw`. `export_seconds` is `torch.export`,
    `compile_seconds` the Inductor compile + C++ build.
    """

    path: Path
    sha256: str
    device: str
    precision: str
    input_chw: tuple[int, ...]
    max_batch: int
    export_seconds: float
    compile_seconds: float
    torch_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["input_chw"] = list(self.input_chw)
        return data


def cxx_compiler() -> str | None:
    """Path of the C++ compiler AOTInductor would use on CPU ($CXX, else g++/c++/clang++)."""
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def aoti_unavailable_reason(device: str = "cpu", precision: str = "fp32") -> str | None:
    """Why AOTInductor cannot build for `device`/`precision` here, or None if it can."""
    if precision not in AOTI_DTYPES:
        return f"unknown AOTInductor precision {precision!r}; choose from {sorted(AOTI_DTYPES)}"
    if importlib.util.find_spec("torch._inductor") is None:
        return f"torch {torch.__version__} has no torch._inductor (AOTInductor needs torch>=2.6)"
    if device == "cpu":
        if precision != "fp32":
            return (
                f"AOTInductor {precision} is offered on CUDA only; on CPU segshield builds "
                "fp32 (reduced-precision CPU kernels are not a deployment target here)"
            )
        if cxx_compiler() is None:
            return "AOTInductor on CPU needs a C++ compiler (g++, c++ or clang++) on PATH"
        return None
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        return f"CUDA is not available to PyTorch (torch {torch.__version__}, {build})"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"this GPU ({torch.cuda.get_device_name()}) does not support bfloat16"
    return None


def aoti_from_torch(
    model: nn.Module,
    sample: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    precision: str = "fp32",
    max_batch: int = 64,
) -> AotiExport:
    """Compile `model` with AOTInductor into the package `path` (`.pt2`).

    Args:
        model: FP32 segmentation model mapping (N,C,H,W) images in [0,1] to (N,K,H,W) logits.
            A copy is converted to `precision` and moved to `device`; the caller's model is
            left as it was.
        sample: real float32 images (N,C,H,W) used as the example input of `torch.export`.
        path: destination `.pt2` file (overwritten).
        device: "cpu" or "cuda"/"cuda:<i>".
        precision: "fp32" (CPU and CUDA), "fp16" or "bf16" (CUDA only).
        max_batch: largest batch the package accepts (dynamic batch axis 1..max_batch).

    Raises:
        EngineUnavailableError: no C++ compiler (CPU), no CUDA, or precision not offered.
        ExportError: torch.export or the Inductor compile fails.
    """
    import copy

    dev = torch.device(device)
    reason = aoti_unavailable_reason(dev.type, precision)
    if reason:
        raise EngineUnavailableError(reason)
    if sample.ndim not in (4, 5) or sample.shape[0] < 1:
        raise ExportError(
            f"sample must be images (N,C,H,W) or volumes (N,C,D,H,W), got {tuple(sample.shape)}"
        )
    sample = sample[:max_batch]
    if sample.shape[0] == 1 and max_batch > 1:
        # torch.export specialises a dimension that is 1 in the example: use a batch of two.
        sample = sample.repeat(2, *([1] * (sample.ndim - 1)))
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = AOTI_DTYPES[precision]
    module = copy.deepcopy(model).eval().to(device=dev, dtype=dtype)
    example = sample.detach().to(device=dev, dtype=dtype)
    start = time.perf_counter()
    exported = _export_program(module, example, max_batch, type(model).__name__)
    export_seconds = time.perf_counter() - start
    inductor = importlib.import_module("torch._inductor")
    start = time.perf_counter()
    built = _compile_package(
        inductor, exported, path, f"{type(model).__name__} for {dev} {precision}"
    )
    compile_seconds = time.perf_counter() - start
    os.replace(built, path)
    logger.info(
        "AOTInductor compiled %s for %s %s in %.1f s (%s)",
        type(model).__name__,
        dev,
        precision,
        compile_seconds,
        path,
    )
    return AotiExport(
        path=path,
        sha256=sha256_file(path),
        device=dev.type,
        precision=precision,
        input_chw=tuple(int(d) for d in sample.shape[1:]),
        max_batch=int(max_batch),
        export_seconds=export_seconds,
        compile_seconds=compile_seconds,
        torch_version=torch.__version__,
    )


def _export_program(
    module: nn.Module, example: torch.Tensor, max_batch: int, model_name: str
) -> Any:
    """`torch.export` of `module` on `example` with a dynamic batch axis 1..max_batch."""
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        raise ExportError(
            f"torch.export of {model_name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _compile_package(inductor: Any, exported: Any, path: Path, what: str) -> Any:
    """AOTInductor-compile the exported program into a package next to `path`; return where it
    was written (a temp file, removed on failure). `what` names the model and target in errors.
    """
    tmp = path.with_name(f".{path.name}.tmp.pt2")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            # Inductor's own use of torch.jit internals; not actionable here.
            warnings.filterwarnings(
                "ignore", message=".*script_method.*", category=DeprecationWarning
            )
            built = inductor.aoti_compile_and_package(exported, package_path=str(tmp))
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"AOTInductor compile of {what} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    return built


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


__all__ = [
    "AOTI_DTYPES",
    "AotiExport",
    "aoti_from_torch",
    "aoti_unavailable_reason",
    "cxx_compiler",
]
