"""The runner contract every inference engine implements, plus shared batch checks.

Modelled after Polygraphy's runners: one class per backend, all taking float32 (N,C,H,W)
images in [0,1] and returning float32 (N,K,H,W) logits, so an audit can replay the same
images on every engine and compare.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from segshield.errors import EngineInputError, ModelOutputError


@runtime_checkable
class Runner(Protocol):
    """An inference engine.

    Attributes:
        name: label used in reports, e.g. "pytorch", "onnxruntime-cpu".
        kind: backend family, "pytorch" or "onnxruntime".
        precision: numeric precision the engine computes in, e.g. "fp32".
        providers: what actually runs (torch device, or ORT execution providers in use).
    """

    name: str
    kind: str
    precision: str
    providers: list[str]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity: name, kind, precision, providers, artifact if any."""
        ...


def infer_batched(runner: Runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Run `images` (N,C,H,W) through `runner` in chunks of at most `batch_size`.

    Returns float32 (N,K,H,W) logits in input order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(images, np.ndarray) or images.ndim not in (4, 5):
        raise EngineInputError(
            f"engine '{runner.name}' expects images of shape (N,C,H,W) or (N,C,D,H,W), got "
            f"{_shape_of(images)}"
        )
    n = images.shape[0]
    if n == 0:
        raise EngineInputError(f"engine '{runner.name}' got an empty batch of shape {images.shape}")
    if n <= batch_size:
        return runner.infer(images)
    # Preallocate after the first chunk (K is only known then) to avoid a final concatenate copy.
    out: np.ndarray | None = None
    for start in range(0, n, batch_size):
        logits = runner.infer(images[start : start + batch_size])
        if out is None:
            out = np.empty((n, *logits.shape[1:]), dtype=np.float32)
        out[start : start + logits.shape[0]] = logits
    assert out is not None
    return out


def as_float32_batch(batch: object, engine: str) -> np.ndarray:
    """Validate an image batch and return it as C-contiguous float32 (N,C,H,W).

    Floating dtypes are cast (float64 -> float32 is the common case); integer images are
    refused because they are usually 0..255 and would need scaling, not a cast.
    """
    if not isinstance(batch, np.ndarray):
        raise EngineInputError(
            f"engine '{engine}' expects a numpy array (N,C,H,W), got {type(batch).__name__}"
        )
    if batch.ndim not in (4, 5):
        raise EngineInputError(
            f"engine '{engine}' expects a rank-4 batch (N,C,H,W) or a rank-5 batch (N,C,D,H,W), "
            f"got shape {batch.shape}"
        )
    if batch.shape[0] == 0:
        raise EngineInputError(f"engine '{engine}' got an empty batch of shape {batch.shape}")
    if not np.issubdtype(batch.dtype, np.floating):
        raise EngineInputError(
            f"engine '{engine}' expects float32 images in [0,1], got dtype {batch.dtype}"
        )
    out = np.ascontiguousarray(batch, dtype=np.float32)
    if not np.isfinite(out).all():
        # Catch broken inputs here so NaN logits are never blamed on the engine.
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        raise EngineInputError(f"engine '{engine}' got a batch with {bad} non-finite values")
    return out


def runner_identity(runner: Runner) -> dict[str, Any]:
    """The fields every runner's `describe()` starts with: name, kind, precision and the
    providers it actually runs on."""
    return {
        "name": runner.name,
        "kind": runner.kind,
        "precision": runner.precision,
        "providers": list(runner.providers),
    }


def check_logits(logits: np.ndarray, engine: str, input_shape: tuple[int, ...]) -> np.ndarray:
    """Check engine output is finite logits (N, K, *spatial) — (N, K, H, W) for segmentation,
    (N, K) for a classifier — with N matching `input_shape`; return float32."""
    n = input_shape[0]
    classifier = logits.ndim == 2
    segmentation = logits.ndim == len(input_shape) and logits.shape[2:] == input_shape[2:]
    if not (classifier or segmentation) or logits.shape[0] != n:
        raise ModelOutputError(
            f"engine '{engine}' returned shape {logits.shape} for input {input_shape}; "
            f"expected logits (N,K) or (N,K,*spatial of the input) with N={n}"
        )
    logits = np.asarray(logits, dtype=np.float32)
    finite = np.count_nonzero(np.isfinite(logits))
    if finite != logits.size:
        raise ModelOutputError(
            f"engine '{engine}' produced {logits.size - finite} non-finite logits "
            f"(of {logits.size}) for input {input_shape}"
        )
    return logits


def _shape_of(obj: object) -> str:
    shape = getattr(obj, "shape", None)
    return str(tuple(shape)) if shape is not None else type(obj).__name__


__all__ = ["Runner", "as_float32_batch", "check_logits", "infer_batched"]
