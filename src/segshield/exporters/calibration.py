"""Calibration images for INT8 engines: checks, digest, batch size and an ORT data reader.

Static INT8 (ONNX Runtime QDQ and TensorRT) is calibrated on *real images* handed in by the
caller (the audit's training split); `images_digest` records exactly what calibrated an engine.
Nothing here imports onnx, onnxruntime or tensorrt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from segshield.errors import DataError
from segshield.hashing import sha256_bytes

CalibrationMethodName = Literal["minmax", "entropy", "percentile"]
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")


def check_calibration_images(
    images: object, expected_chw: tuple[int, ...] | None = None
) -> np.ndarray:
    """Validate calibration images; return them as C-contiguous float32 (N,C,H,W) in [0,1].

    Raises DataError for anything that is not a non-empty, finite, [0,1] float batch of the
    model's (C,H,W) — integer 0..255 images and unscaled data are refused, not guessed at.
    """
    if not isinstance(images, np.ndarray) or images.ndim not in (4, 5) or images.shape[0] == 0:
        shape = getattr(images, "shape", type(images).__name__)
        raise DataError(
            f"calibration images must be a non-empty array (N,C,H,W) or (N,C,D,H,W), got {shape}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"calibration images must be float images in [0,1], got dtype {images.dtype}"
        )
    out = np.ascontiguousarray(images, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError("calibration images contain NaN or Inf values")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"calibration images must lie in [0,1] like the audit's images, got [{lo:.3g}, "
            f"{hi:.3g}]"
        )
    if expected_chw is not None and tuple(out.shape[1:]) != tuple(expected_chw):
        raise DataError(
            f"calibration images have shape {out.shape}; the model expects "
            f"(N,{','.join(str(d) for d in expected_chw)})"
        )
    return out


def images_digest(images: np.ndarray) -> str:
    """SHA-256 of a float32 image batch (shape and bytes), to record what calibrated an engine."""
    arr = np.ascontiguousarray(images, dtype=np.float32)
    return sha256_bytes(repr(arr.shape).encode() + arr.tobytes())


def equal_batch_size(n_images: int, most: int) -> int:
    """The largest batch size <= `most` that divides `n_images`: equal batches use every image.

    ORT's histogram calibrators (entropy, percentile) fail on a short last batch, and
    TensorRT's calibrator serves whole batches only.
    """
    return max(d for d in range(1, min(most, n_images) + 1) if n_images % d == 0)


class ImageCalibrationReader:
    """ONNX Runtime `CalibrationDataReader` over real images, in order, `batch_size` at a time.

    `get_next()` returns `{input_name: images[i:i+batch_size]}` (float32 (B,C,H,W)) and None at
    the end. ORT recognises the class by its `get_next` method, so onnxruntime is not imported.
    `batches_served` / `images_served` count what was handed out since the last `rewind()`.
    """

    def __init__(self, images: np.ndarray, input_name: str = "images", batch_size: int = 8):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.images = check_calibration_images(images)
        self.input_name = input_name
        self.batch_size = batch_size
        self._next = 0
        self.batches_served = 0
        self.images_served = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as an ORT feed, or None when every image was served."""
        if self._next >= len(self.images):
            return None
        chunk = self.images[self._next : self._next + self.batch_size]
        self._next += len(chunk)
        self.batches_served += 1
        self.images_served += len(chunk)
        return {self.input_name: chunk}

    def rewind(self) -> None:
        """Start again from the first image."""
        self._next = 0
        self.batches_served = 0
        self.images_served = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed


__all__ = [
    "CALIBRATION_METHODS",
    "CalibrationMethodName",
    "ImageCalibrationReader",
    "check_calibration_images",
    "equal_batch_size",
    "images_digest",
]
