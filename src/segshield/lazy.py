"""Lazy imports of the optional heavy backends (onnxruntime, tensorrt).

Sits below both `segshield.exporters` and `segshield.engines` so that either can import a
backend on demand without one stage importing the other. Nothing here is imported at module
load: each function imports its backend when called and turns a missing or broken install
into `EngineUnavailableError` with a hint.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

from segshield.errors import EngineUnavailableError

_TRT_LOGGER: Any = None


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or raise EngineUnavailableError with an install hint."""
    try:
        import onnxruntime
    except (ImportError, OSError) as exc:  # OSError: a GPU build with broken shared libraries
        raise EngineUnavailableError(
            f"onnxruntime is not installed; pip install onnxruntime ({exc})"
        ) from exc
    return onnxruntime


def tensorrt_unavailable_reason() -> str | None:
    """Why native TensorRT cannot run here (package missing, no CUDA), or None if it can."""
    import torch  # here, not at module level: this module stays import-light

    reasons = []
    if importlib.util.find_spec("tensorrt") is None:
        reasons.append(
            "the tensorrt Python package is not installed (pip install tensorrt, on a machine "
            "with an NVIDIA GPU and driver)"
        )
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        reasons.append(f"CUDA is not available to PyTorch (torch {torch.__version__}, {build})")
    return "; ".join(reasons) or None


def import_tensorrt() -> ModuleType:
    """Import tensorrt, or raise EngineUnavailableError saying why it cannot be used."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise EngineUnavailableError(reason)
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: libnvinfer missing or mismatched
        raise EngineUnavailableError(f"tensorrt cannot be imported: {exc}") from exc
    return tensorrt


def trt_logger(trt: ModuleType) -> Any:
    """One shared TensorRT logger (TensorRT wants a single logger per process)."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGER


__all__ = ["import_onnxruntime", "import_tensorrt", "tensorrt_unavailable_reason", "trt_logger"]


# Distributions that provide an importable module under another name.
_DISTRIBUTIONS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tensorrt": ("tensorrt",)}


def installed_version(module: str) -> str | None:
    """The installed version of `module` without importing it (importing onnxruntime costs
    about a second): from the module if already loaded, else from the package metadata."""
    import sys
    from importlib import metadata

    loaded = sys.modules.get(module)
    if loaded is not None and hasattr(loaded, "__version__"):
        return str(loaded.__version__)
    for dist in _DISTRIBUTIONS.get(module, (module,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
