"""The in-memory dataset every later stage consumes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from segshield.errors import DataError

# meta keys holding one entry per image: `select` and `subset` slice them with the images.
PER_ITEM_META = ("volume", "slice_index", "spacing")


@dataclass(frozen=True)
class SegDataset:
    """Images and masks, already preprocessed.

    images: float32 (N, C, H, W) in [0, 1], or (N, C, D, H, W) for volumes; masks: uint8
    (N, 1, *spatial), {0, 1} or class labels, or (N, K, *spatial) multi-label {0, 1};
    names: N identifiers (file stems, ``volume:slice`` for slices of volumes); source: where
    it came from (for the report);
    meta: JSON-serialisable extras; the keys in ``PER_ITEM_META`` (``volume`` ids,
    ``slice_index``, ``spacing`` in mm) hold one entry per image.
    """

    images: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]
    source: str
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim not in (4, 5) or self.masks.ndim != self.images.ndim:
            raise DataError(
                f"images must be (N, C, H, W) and masks (N, 1, H, W), or (N, C, D, H, W) and "
                f"(N, 1, D, H, W) for volumes; got images {self.images.shape} and masks "
                f"{self.masks.shape}"
            )
        n = self.images.shape[0]
        if self.masks.shape[0] != n or len(self.names) != n:
            raise DataError(
                f"{n} images, {self.masks.shape[0]} masks and {len(self.names)} names differ"
            )
        if self.images.shape[2:] != self.masks.shape[2:] or self.masks.shape[1] < 1:
            raise DataError(
                f"images {self.images.shape} and masks {self.masks.shape} differ in their "
                "spatial size"
            )
        if n == 0:
            raise DataError(f"dataset {self.source!r} has no images")
        for key in PER_ITEM_META:
            if key in self.meta and len(self.meta[key]) != n:
                raise DataError(f"meta[{key!r}] has {len(self.meta[key])} entries for {n} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image, (C, D, H, W) of one volume."""
        return tuple(int(v) for v in self.images.shape[1:])

    @property
    def ndim_spatial(self) -> int:
        """2 for images, 3 for volumes."""
        return int(self.images.ndim - 2)

    def volume_ids(self) -> tuple[str, ...]:
        """The volume (patient) each image comes from: ``meta["volume"]``, else its name."""
        return tuple(str(v) for v in self.meta.get("volume", self.names))

    def volume_indices(self) -> dict[str, list[int]]:
        """Image indices per volume, in first-seen order: to aggregate metrics per volume."""
        out: dict[str, list[int]] = {}
        for i, v in enumerate(self.volume_ids()):
            out.setdefault(v, []).append(i)
        return out

    def select(self, indices: Sequence[int], source: str | None = None) -> SegDataset:
        """The images at ``indices`` (in that order), per-image meta sliced with them."""
        idx = np.asarray(list(indices), dtype=np.int64)
        meta = dict(self.meta)
        for key in PER_ITEM_META:
            if key in meta:
                meta[key] = [meta[key][i] for i in idx]
        if isinstance(meta.get("volumes"), dict) and "volume" in meta:
            kept = set(meta["volume"])  # the per-volume records of the volumes still present
            meta["volumes"] = {k: v for k, v in meta["volumes"].items() if k in kept}
        return SegDataset(
            self.images[idx],
            self.masks[idx],
            tuple(self.names[i] for i in idx),
            self.source if source is None else source,
            meta,
        )

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
        if not any(key in self.meta for key in PER_ITEM_META):
            return SegDataset(
                self.images[:limit], self.masks[:limit], self.names[:limit], self.source, self.meta
            )
        return self.select(range(limit))

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
