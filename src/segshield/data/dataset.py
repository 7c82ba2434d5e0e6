"""The in-memory dataset every later stage consumes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from segshield.errors import DataError


@dataclass(frozen=True)
class SegDataset:
    """Images and binary masks, already preprocessed.

    images: float32 (N, C, H, W) in [0, 1]; masks: uint8 (N, 1, H, W) in {0, 1};
    names: N identifiers (file stems); source: where it came from (for the report).
    """

    images: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]
    source: str
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.masks.ndim != 4:
            raise DataError(
                f"images must be (N, C, H, W) and masks (N, 1, H, W); got images "
                f"{self.images.shape} and masks {self.masks.shape}"
            )
        n = self.images.shape[0]
        if self.masks.shape[0] != n or len(self.names) != n:
            raise DataError(
                f"{n} images, {self.masks.shape[0]} masks and {len(self.names)} names differ"
            )
        if self.images.shape[2:] != self.masks.shape[2:] or self.masks.shape[1] != 1:
            raise DataError(
                f"images {self.images.shape} and masks {self.masks.shape} differ in H, W "
                "(or masks have more than one channel)"
            )
        if n == 0:
            raise DataError(f"dataset {self.source!r} has no images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def sha256(self) -> str:
        """Content hash of the preprocessed arrays and names: identifies the exact data audited."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.masks, dtype=np.uint8).tobytes())
        h.update("\n".join(self.names).encode())
        return h.hexdigest()

    def subset(self, limit: int | None) -> SegDataset:
        """The first `limit` images (all when None)."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise DataError(f"limit must be >= 1, got {limit}")
        return SegDataset(
            self.images[:limit], self.masks[:limit], self.names[:limit], self.source, self.meta
        )

    def describe(self) -> dict:
        """JSON-serialisable summary for reports."""
        return {
            "source": self.source,
            "n_images": len(self),
            "image_shape": list(self.image_shape),
            "foreground_fraction": float(self.masks.mean()),
            "sha256": self.sha256(),
            "names": list(self.names),
            **self.meta,
        }
