"""Datasets of volumes: 2D slices for a 2D model, whole volumes (or patches) for a 3D model.

Intensities are scaled per VOLUME and per channel (a percentile over the whole volume, not per
slice, so that slices of one patient share one mapping), then checked (see
:mod:`segshield.data.intensity`).

Slices (:func:`slices_from_volumes`): the array is in the file's voxel order (x, y, z); a slice
along ``axis`` keeps the two other axes a < b and is shown as (H, W) = (b, a), i.e. for an
axial slice of an (x, y, z) volume rows run along y and columns along x, as the bundled
lesion PNGs; no flips. ``axis`` may be named: axial / coronal / sagittal pick the axis that
points S/I, A/P, L/R from the file's orientation (axis 2, 1, 0 when it is unknown).

Volumes (:func:`volumes_dataset`): (N, C, D, H, W) with (D, H, W) = (z, y, x) by default (as
nnU-Net and SimpleITK order them, and as the stacked axial slices), or ``order="xyz"``, the
file's order as MONAI's ``LoadImage`` gives it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segshield.data.dataset import SegDataset
from segshield.data.intensity import (
    Intensity,
    check_intensities,
    resolve_intensity,
    scale_intensity,
)
from segshield.data.loaders import DEFAULT_SIZE, _resize
from segshield.data.medical import Volume, read_volume
from segshield.data.volume_layouts import VolumePair
from segshield.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_VOLUME_SIZE",
    "PLANES",
    "check_channels",
    "slices_from_volumes",
    "split_by_volume",
    "volumes_dataset",
]

DEFAULT_VOLUME_SIZE = (32, 64, 64)
PLANES = {"sagittal": ("L", "R"), "coronal": ("A", "P"), "axial": ("S", "I")}
_DEFAULT_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def check_channels(data_channels: int, model_channels: int, source: str = "the data") -> None:
    """DataError when the data's channel count differs from the model's, naming both."""
    if data_channels == model_channels:
        return
    if data_channels == 3 and model_channels == 1:
        fix = "pass --channels 1 to convert to grey or use a 3-channel model"
        kind = "3 channels (RGB)"
    elif data_channels == 1:
        fix = (
            f"pass --channels {model_channels} to repeat the grey channel or use a 1-channel model"
        )
        kind = "1 channel (grey)"
    else:
        fix = f"use a model with {data_channels} input channels"
        kind = f"{data_channels} channels"
    raise DataError(f"{source} has {kind} but the model takes {model_channels}: {fix}")


class _Case:
    """One pair read, checked and scaled: image float32 (X, Y, Z, C) in [0, 1], mask uint8
    (X, Y, Z), and what the report needs about it."""

    def __init__(self, pair: VolumePair, spec: Intensity, channels: int, num_classes: int) -> None:
        vols = [read_volume(p) for p in pair.images]
        first = vols[0]
        for v in vols[1:]:
            if v.spatial_shape != first.spatial_shape:
                raise DataError(
                    f"channel {v.source} is {v.spatial_shape} voxels but {first.source} is "
                    f"{first.spatial_shape}"
                )
        mask_vol = read_volume(pair.mask)
        if mask_vol.spatial_shape != first.spatial_shape:
            raise DataError(
                f"label {pair.mask} is {mask_vol.spatial_shape} voxels but its volume "
                f"{first.source} is {first.spatial_shape}"
            )
        self.name, self.volume = pair.name, first
        self.modality = pair.modality or first.modality
        raw = [v.array if v.array.ndim == 4 else v.array[..., None] for v in vols]
        raw_all = np.concatenate(raw, axis=3) if len(raw) > 1 else raw[0]
        self.image, self.applied = self._scale(raw_all, spec, pair)
        self.image = _adapt_channels(self.image, channels, first.source)
        self.mask = _volume_mask(mask_vol.array, pair.mask, num_classes)

    def _scale(self, raw: np.ndarray, spec: Intensity, pair: VolumePair) -> tuple[np.ndarray, list]:
        out = np.empty(raw.shape, dtype=np.float32)
        applied = []
        for c in range(raw.shape[3]):
            ch = raw[..., c]
            where = str(pair.images[min(c, len(pair.images) - 1)])
            modality = pair.channel_names[c] if c < len(pair.channel_names) else self.modality
            concrete = resolve_intensity(spec, ch, modality, where)
            out[..., c] = scale_intensity(ch, concrete)
            name = f"volume {where}" + (f" channel {c}" if raw.shape[3] > 1 else "")
            check_intensities(out[..., c], ch, name, concrete)
            applied.append(concrete)
        return out, applied

    def record(self) -> dict:
        v = self.volume
        return {
            "shape": list(v.spatial_shape),
            "spacing": [float(s) for s in v.spacing],
            "modality": self.modality,
            "axcodes": "".join(v.axcodes) if v.axcodes else None,
            "intensity": [a.describe() for a in self.applied],
        }


def _adapt_channels(image: np.ndarray, channels: int, source: str) -> np.ndarray:
    """(X, Y, Z, C) -> (X, Y, Z, channels): grey repeated to 3, RGB to grey with a warning."""
    c = image.shape[3]
    if c == channels:
        return image
    if c == 1 and channels == 3:
        return np.repeat(image, 3, axis=3)
    if c == 3 and channels == 1:
        log.warning("%s: RGB volume converted to grey for a 1-channel model", source)
        return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]
    check_channels(c, channels, f"volume {source}")
    return image


def _volume_mask(arr: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """Label volume -> uint8 (X, Y, Z): {0, 1} for a binary task, else labels 0..K-1."""
    if arr.ndim == 4:
        if arr.shape[3] != 1:
            raise DataError(f"label {path} has {arr.shape[3]} channels; expected one label map")
        arr = arr[..., 0]
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise DataError(f"label {path} holds non-integer values; expected integer labels")
        arr = arr.astype(np.int64)
    values = np.unique(arr)
    if num_classes <= 2:
        if len(values[values != 0]) > 1:
            raise DataError(
                f"label {path} holds labels {values[:8].tolist()}; a binary task needs 0 and one "
                f"foreground label (pass num_classes / --num-classes {int(values.max()) + 1})"
            )
        return (arr != 0).astype(np.uint8)
    if values.min() < 0 or values.max() >= num_classes:
        raise DataError(
            f"label {path} holds labels {values[:8].tolist()}; a {num_classes}-class task needs "
            f"labels 0..{num_classes - 1}"
        )
    return arr.astype(np.uint8)


def slice_axis(axis: int | str, volume: Volume) -> int:
    """An array axis 0..2 from an index or a plane name (via the volume's axcodes)."""
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        if not 0 <= axis <= 2:
            raise DataError(f"slice axis must be 0, 1 or 2, got {axis}")
        return int(axis)
    name = str(axis).lower()
    if name.isdigit():
        return slice_axis(int(name), volume)
    if name not in PLANES:
        raise DataError(f"unknown slice axis {axis!r}; choose 0, 1, 2, axial, coronal or sagittal")
    if volume.axcodes is None:
        return _DEFAULT_AXIS[name]
    for k, code in enumerate(volume.axcodes):
        if code in PLANES[name]:
            return k
    return _DEFAULT_AXIS[name]


def _source(pairs: Sequence[VolumePair], source: str | None) -> str:
    if source is not None:
        return source
    files = [str(p.mask) for p in pairs] + [str(i) for p in pairs for i in p.images]
    return os.path.commonpath(files) if files else "volumes"


def _cases(pairs, spec, channels, num_classes):
    if not pairs:
        raise DataError("no volumes given")
    for pair in pairs:
        yield _Case(pair, spec, channels, num_classes)


def slices_from_volumes(
    pairs: Sequence[VolumePair],
    axis: int | str = 2,
    skip_empty: bool = True,
    size: tuple[int, int] = DEFAULT_SIZE,
    channels: int = 1,
    intensity: Intensity | None = None,
    num_classes: int = 1,
    source: str | None = None,
) -> SegDataset:
    """2D slices of volumes for a 2D model: images (N, channels, *size), masks (N, 1, *size).

    Names are ``case:slice`` (slice index zero-padded); meta ``volume`` (case per slice),
    ``slice_index`` and ``spacing`` (the slice's (H, W) spacing in mm after the resize) hold
    one entry per slice; ``volumes`` records each case (shape, spacing, modality, intensity,
    slice axis). ``skip_empty`` drops slices without foreground (as seed unet-family does).
    """
    spec = intensity or Intensity()
    images, masks, names, vol_ids, idx, spacing = [], [], [], [], [], []
    records: dict[str, dict] = {}
    for case in _cases(pairs, spec, channels, num_classes):
        a = slice_axis(axis, case.volume)
        rest = [k for k in range(3) if k != a]
        sp = case.volume.spacing
        kept = 0
        for k in range(case.image.shape[a]):
            msk = np.take(case.mask, k, axis=a).T  # (H, W) = (axis rest[1], axis rest[0])
            if skip_empty and not msk.any():
                continue
            img = np.transpose(np.take(case.image, k, axis=a), (2, 1, 0))  # (C, H, W)
            h0, w0 = img.shape[1:]
            images.append(np.clip(_resize(img, size, nearest=False), 0.0, 1.0))
            m = _resize(msk[None].astype(np.float32), size, nearest=True)
            masks.append(np.rint(m).astype(np.uint8))
            names.append(f"{case.name}:{k:03d}")
            vol_ids.append(case.name)
            idx.append(k)
            spacing.append([sp[rest[1]] * h0 / size[0], sp[rest[0]] * w0 / size[1]])
            kept += 1
        records[case.name] = {**case.record(), "slice_axis": a, "slices": kept}
    src = _source(pairs, source)
    if not images:
        raise DataError(
            f"no slice of the {len(records)} volume(s) in {src} has foreground; pass "
            "skip_empty=False (--keep-empty-slices) to audit empty slices"
        )
    log.info("%d slices from %d volumes in %s", len(names), len(records), src)
    meta = {
        "volume_mode": "slices",
        "intensity": _intensity_meta(spec, records),
        "volumes": records,
        "volume": vol_ids,
        "slice_index": idx,
        "spacing": spacing,
    }
    return SegDataset(np.stack(images).astype(np.float32), np.stack(masks), tuple(names), src, meta)


def _intensity_meta(spec: Intensity, records: dict) -> dict:
    applied: list[dict] = []
    for rec in records.values():
        for a in rec["intensity"]:
            if a not in applied:
                applied.append(a)
    return {**spec.describe(), "applied": applied}


def _patch(arr: np.ndarray, mask: np.ndarray, patch: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Crop (C, *S) and (*S) to ``patch`` centred on the mask's bounding box (the volume's
    centre when empty), zero-padded where the volume is smaller."""
    fg = np.argwhere(mask)
    centre = (fg.min(0) + fg.max(0)) / 2.0 if len(fg) else (np.asarray(mask.shape) - 1) / 2.0
    img_out = np.zeros((arr.shape[0], *patch), dtype=np.float32)
    msk_out = np.zeros(patch, dtype=np.uint8)
    src, dst = [], []
    for n, p, c in zip(mask.shape, patch, centre, strict=True):
        start = int(np.clip(round(c - (p - 1) / 2.0), 0, max(n - p, 0)))
        length = min(p, n)
        off = (p - length) // 2
        src.append(slice(start, start + length))
        dst.append(slice(off, off + length))
    img_out[(slice(None), *dst)] = arr[(slice(None), *src)]
    msk_out[tuple(dst)] = mask[tuple(src)]
    return img_out, msk_out


def _resize3d(arr: np.ndarray, mask: np.ndarray, size: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """(C, *S) trilinear (anti-aliased when shrinking) and (*S) nearest -> ``size``."""
    from skimage.transform import resize

    if arr.shape[1:] == tuple(size):
        return arr, mask
    shrink = any(s > t for s, t in zip(arr.shape[1:], size, strict=True))
    img = np.stack(
        [resize(ch, size, order=1, anti_aliasing=shrink, preserve_range=True) for ch in arr]
    )
    msk = resize(mask, size, order=0, anti_aliasing=False, preserve_range=True)
    return np.clip(img, 0.0, 1.0).astype(np.float32), np.rint(msk).astype(np.uint8)


def volumes_dataset(
    pairs: Sequence[VolumePair],
    size: tuple[int, int, int] = DEFAULT_VOLUME_SIZE,
    patch: tuple[int, int, int] | None = None,
    channels: int = 1,
    intensity: Intensity | None = None,
    num_classes: int = 1,
    order: str = "zyx",
    source: str | None = None,
) -> SegDataset:
    """Whole volumes for a 3D model: images (N, channels, D, H, W), masks (N, 1, D, H, W).

    Each volume is resized to ``size`` (a batch needs one shape), or, with ``patch``, cropped
    at full resolution to a patch centred on its lesion. ``order`` "zyx" (default) or "xyz"
    gives the axes (see the module doc). meta ``spacing`` holds each volume's effective spacing
    after the resize (mm, in output axis order); ``volumes`` the original shape and spacing.
    """
    if order not in ("zyx", "xyz"):
        raise DataError(f"volume order must be zyx or xyz, got {order!r}")
    target = tuple(int(v) for v in (patch or size))
    if len(target) != 3 or min(target) < 1:
        raise DataError(f"a volume size or patch needs 3 positive sizes (D, H, W), got {target}")
    spec = intensity or Intensity()
    images, masks, names, spacing = [], [], [], []
    records: dict[str, dict] = {}
    perm = (2, 1, 0) if order == "zyx" else (0, 1, 2)
    for case in _cases(pairs, spec, channels, num_classes):
        img = np.transpose(case.image, (3, *perm))  # (C, *S)
        msk = np.transpose(case.mask, perm)
        sp = [case.volume.spacing[k] for k in perm]
        shape0 = msk.shape
        if patch is not None:
            img, msk = _patch(img, msk, target)
            eff = sp
        else:
            img, msk = _resize3d(img, msk, target)
            eff = [s * n / t for s, n, t in zip(sp, shape0, target, strict=True)]
        images.append(img)
        masks.append(msk[None])
        names.append(case.name)
        spacing.append([float(v) for v in eff])
        records[case.name] = case.record()
    src = _source(pairs, source)
    meta = {
        "volume_mode": "patches" if patch is not None else "volumes",
        "axis_order": order,
        "intensity": _intensity_meta(spec, records),
        "volumes": records,
        "volume": names,
        "spacing": spacing,
    }
    log.info("%d volumes (%s) from %s", len(names), "x".join(map(str, target)), src)
    return SegDataset(np.stack(images).astype(np.float32), np.stack(masks), tuple(names), src, meta)


def split_by_volume(
    ds: SegDataset,
    test_fraction: float = 0.25,
    test_volumes: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[SegDataset, SegDataset]:
    """(train, test) with every volume (patient) on one side only.

    ``test_volumes`` names the test cases; else ``ceil(test_fraction * volumes)`` of them (at
    least one, and one left for training) are drawn with ``seed``, reproducibly.
    """
    ids = ds.volume_ids()
    unique = sorted(set(ids))
    if test_volumes is not None:
        test = set(test_volumes)
        unknown = sorted(test - set(unique))
        if unknown:
            raise DataError(f"unknown test volume(s) {unknown}; {ds.source} has {unique}")
    else:
        if len(unique) < 2:
            raise DataError(f"{ds.source} has {len(unique)} volume; a split needs two or more")
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        k = min(max(1, math.ceil(test_fraction * len(unique))), len(unique) - 1)
        rng = np.random.default_rng(seed)
        test = {unique[i] for i in rng.permutation(len(unique))[:k]}
    train_idx = [i for i, v in enumerate(ids) if v not in test]
    test_idx = [i for i, v in enumerate(ids) if v in test]
    if not train_idx or not test_idx:
        raise DataError(f"split of {ds.source} leaves an empty side (test volumes {sorted(test)})")
    return (
        ds.select(train_idx, f"{ds.source}:train"),
        ds.select(test_idx, f"{ds.source}:test"),
    )
