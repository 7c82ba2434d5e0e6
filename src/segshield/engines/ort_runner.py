"""ONNX Runtime runner. onnxruntime is imported only when a runner is built.

ONNX Runtime silently falls back to CPU when a GPU provider's libraries are missing; this
runner checks which providers the session really uses so an audit never reports an engine
it did not run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from segshield.engines.base import as_float32_batch, check_logits, runner_identity
from segshield.errors import EngineInputError, EngineUnavailableError, ModelLoadError
from segshield.hashing import sha256_file
from segshield.lazy import import_onnxruntime

logger = logging.getLogger(__name__)

# ORT input element types this runner can feed, and the precision label they imply.
_INPUT_TYPES: dict[str, tuple[type[np.floating[Any]], str]] = {
    "tensor(float)": (np.float32, "fp32"),
    "tensor(float16)": (np.float16, "fp16"),
}

_SHORT_NAMES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
    "DmlExecutionProvider": "directml",
    "CoreMLExecutionProvider": "coreml",
    "OpenVINOExecutionProvider": "openvino",
    "ROCMExecutionProvider": "rocm",
}

ProviderSpec = str | tuple[str, dict[str, Any]]


def available_ort_providers() -> list[str]:
    """Execution providers this onnxruntime build offers; [] when onnxruntime is missing."""
    try:
        ort = import_onnxruntime()
    except EngineUnavailableError:
        return []
    return list(ort.get_available_providers())


class OrtRunner:
    """Run an ONNX model with ONNX Runtime.

    Args:
        path: `.onnx` file with exactly one input, float32 (N,C,H,W) images in [0,1]. The
            output named "logits" is used, else the first output; it must be (N,K,H,W).
        providers: execution providers in priority order; a name or (name, options) pair.
        require: if True (default), every requested provider must be available and the
            first one must really be used by the session, else EngineUnavailableError. If
            False, unavailable providers are dropped with a warning and fallback is allowed;
            `providers` then shows what actually runs.
        session_options: an `onnxruntime.SessionOptions`, passed through.
        name: label for reports; default "onnxruntime-<first provider in use>", e.g.
            "onnxruntime-cpu".
        precision: label for reports when the graph computes in another precision than its
            input type says (an FP16 or INT8 graph with FP32 IO); default from the input type.

    Raises:
        EngineUnavailableError: onnxruntime missing, or providers unavailable / not used.
        ModelLoadError: the file is missing, unreadable or not a usable ONNX model.
    """

    kind = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[ProviderSpec] = ("CPUExecutionProvider",),
        *,
        require: bool = True,
        session_options: Any = None,
        name: str | None = None,
        precision: str | None = None,
    ) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        if isinstance(providers, str):  # a bare string would be iterated per character
            providers = (providers,)
        requested = list(providers)
        if not requested:
            raise EngineUnavailableError("OrtRunner needs at least one execution provider")
        names = [p if isinstance(p, str) else p[0] for p in requested]
        self.requested_providers = names
        requested = _usable_providers(ort, requested, names, require)

        if not self.path.is_file():
            raise ModelLoadError(f"ONNX model not found: {self.path}")
        try:
            # Hash before loading so the recorded digest is of the bytes ORT reads.
            self.sha256 = sha256_file(self.path)
        except OSError as exc:
            raise ModelLoadError(f"cannot read ONNX model {self.path}: {exc}") from exc
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options, providers=requested
            )
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ModelLoadError(
                f"ONNX Runtime cannot load {self.path} with providers {names}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

        in_use = list(self.session.get_providers())
        if names[0] not in in_use:
            message = f"requested {names[0]} but the session runs on {in_use}"
            if require:
                raise EngineUnavailableError(f"{message} (model {self.path})")
            logger.warning("%s; continuing because require=False", message)
        self.providers: list[str] = in_use
        self.name = name or f"onnxruntime-{_SHORT_NAMES.get(in_use[0], in_use[0])}"
        self.ort_version = str(ort.__version__)

        self._read_io(precision)

    def _read_io(self, precision: str | None) -> None:
        """Check the session has one rank-4 (or rank-5 volume) float image input; pick the
        logits output."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            listed = ", ".join(f"{i.name}{list(i.shape or [])}" for i in inputs)
            raise ModelLoadError(
                f"{self.path} has {len(inputs)} inputs ({listed}); segshield engines take "
                "models with exactly one image input (N,C,H,W)"
            )
        model_input = inputs[0]
        if model_input.type not in _INPUT_TYPES:
            raise ModelLoadError(
                f"{self.path} input {model_input.name!r} has type {model_input.type}; "
                f"supported: {sorted(_INPUT_TYPES)}"
            )
        self._feed_dtype, input_precision = _INPUT_TYPES[model_input.type]
        self.precision: str = precision or input_precision
        shape = list(model_input.shape) if model_input.shape is not None else None
        if shape is not None and len(shape) not in (4, 5):
            raise ModelLoadError(
                f"{self.path} input {model_input.name!r} has shape {shape}; expected rank 4 "
                "(N,C,H,W) or rank 5 (N,C,D,H,W)"
            )
        self.input_name: str = model_input.name
        # Dims are ints when fixed, strings (or None) when symbolic; only ints are enforced.
        self.input_shape: list[int | str | None] | None = shape

        outputs = self.session.get_outputs()
        out_names = [o.name for o in outputs]
        self.output_name: str = "logits" if "logits" in out_names else out_names[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits."""
        images = as_float32_batch(batch, self.name)
        self._check_shape(images.shape)
        feed = images if self._feed_dtype is np.float32 else images.astype(self._feed_dtype)
        (logits,) = self.session.run([self.output_name], {self.input_name: feed})
        return check_logits(np.asarray(logits), self.name, images.shape)

    def _check_shape(self, got: tuple[int, ...]) -> None:
        if self.input_shape is None:
            return
        for axis, want in enumerate(self.input_shape):
            if isinstance(want, int) and want > 0 and got[axis] != want:
                expected = tuple(d if isinstance(d, int) else (d or "?") for d in self.input_shape)
                axis_name = "NCHW"[axis]
                raise EngineInputError(
                    f"engine '{self.name}' expects input shape {expected}, got {got} "
                    f"(axis {axis_name}: {got[axis]} != {want}); model {self.path.name}"
                )

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity of this engine, including the artifact hash."""
        return {
            **runner_identity(self),
            "requested_providers": list(self.requested_providers),
            "onnxruntime_version": self.ort_version,
            "input_name": self.input_name,
            "input_shape": None
            if self.input_shape is None
            else [
                d if isinstance(d, int) else (None if d is None else str(d))
                for d in self.input_shape
            ],
            "output_name": self.output_name,
            "artifact": {"path": str(self.path), "sha256": self.sha256},
        }

    def __repr__(self) -> str:
        return f"OrtRunner(name={self.name!r}, path={str(self.path)!r}, providers={self.providers})"


def _usable_providers(
    ort: ModuleType, requested: list[ProviderSpec], names: list[str], require: bool
) -> list[ProviderSpec]:
    """`requested` minus providers this onnxruntime build lacks (require=False), or raise
    EngineUnavailableError naming them (require=True)."""
    available = list(ort.get_available_providers())
    missing = [n for n in names if n not in available]
    if not missing:
        return requested
    if require:
        raise EngineUnavailableError(
            f"requested execution provider(s) {missing} not available in this "
            f"onnxruntime build; available: {available}"
        )
    logger.warning(
        "execution provider(s) %s not available (available: %s); continuing without",
        missing,
        available,
    )
    usable = [p for p, n in zip(requested, names, strict=True) if n not in missing]
    return usable or ["CPUExecutionProvider"]


__all__ = ["OrtRunner", "available_ort_providers", "import_onnxruntime"]
