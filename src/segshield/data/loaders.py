"""2D loaders: `dataset_from_folder` (images/ + masks/ by stem), `dataset_from_busi` (BUSI
layout), `bundled_dataset` (the real sample data shipped inside); `segshield.data.layout`
detects which (and volumes).

Preprocessing follows seed unet-busi: intensities scaled to [0, 1] (the `auto` rule of
`segshield.data.intensity`: 8-bit by the dtype's range as before, 16-bit by the image's
percentiles rather than /65535, which leaves 12-bit data nearly black), then resized to a
configured size (default 128x128; bilinear for images, nearest for masks). RGB stays RGB for
channels=3; converting it to grey for channels=1 is logged as a warning.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segshield.data.dataset import SegDataset
from segshield.data.intensity import (
    Intensity,
    IntensityMode,
    check_intensities,
    resolve_intensity,
    scale_intensity,
)
from segshield.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
BUNDLED = ("nuclei", "lesions")
DEFAULT_SIZE = (128, 128)
_BUSI_MASK = re.compile(r"^(?P<stem>.+)_mask(?:_\d+)?$")


def _read_array(path: Path) -> np.ndarray:
    """Read an image file as an array (H, W) or (H, W, C); a clear DataError if unreadable."""
    try:
        # PIL only warns between 1x and 2x its pixel limit and decodes anyway: refuse there too
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGB")
            arr = np.asarray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"refusing to read image {path}: it would decompress to more pixels than "
            f"PIL's limit (Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}), as a "
            "decompression bomb does"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    except Exception as exc:  # a corrupt file can break a PIL decoder in many ways
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"image {path} has unsupported shape {arr.shape}")
    return arr


class _Notes:
    """What a dataset's loading decided, logged once and recorded in its meta."""

    def __init__(self, requested: Intensity) -> None:
        self.requested = requested
        self.applied: dict[str, dict] = {}
        self.grey_from_rgb: list[str] = []

    def meta(self) -> dict:
        return {"intensity": {**self.requested.describe(), "applied": list(self.applied.values())}}

    def log(self, source: str) -> None:
        if self.requested.mode == IntensityMode.AUTO and set(self.applied) != {"dtype"}:
            log.info("%s: intensity auto -> %s", source, ", ".join(self.applied))
        if self.grey_from_rgb:
            log.warning(
                "%s: %d RGB image(s) converted to grey for a 1-channel model (first: %s); a "
                "3-channel model keeps RGB (--channels 3)",
                source, len(self.grey_from_rgb), self.grey_from_rgb[0],
            )  # fmt: skip


def _scale01(arr: np.ndarray, path: Path, spec: Intensity, notes: _Notes) -> np.ndarray:
    """Raw pixels -> float32 [0, 1] by ``spec`` (``auto`` resolved per image), refusing a
    scaling that leaves the image degenerate (DataError naming the file)."""
    applied = resolve_intensity(spec, arr, name=str(path))
    scaled = scale_intensity(arr, applied)
    check_intensities(scaled, arr, f"image {path}", applied)
    notes.applied.setdefault(applied.label(), applied.describe())
    return scaled


def _to_channels(
    arr: np.ndarray, channels: int, path: Path, notes: _Notes | None = None
) -> np.ndarray:
    """(H, W) or (H, W, C) -> (channels, H, W)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 4:  # drop alpha
        arr = arr[..., :3]
    if channels == 1 and arr.shape[2] == 3:
        if notes is not None and not _grey_in_rgb(arr):
            notes.grey_from_rgb.append(str(path))
        # ITU-R 601 luma, as PIL's "L" conversion.
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = arr[..., None]
    elif channels == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] != channels:
        raise DataError(f"image {path} has {arr.shape[2]} channels, expected {channels}")
    return np.transpose(arr, (2, 0, 1))


def _grey_in_rgb(arr: np.ndarray) -> bool:
    """(H, W, 3): grey stored as RGB (all channels equal), converted without loss."""
    return bool(
        np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
    )


def _resize(arr: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """arr: (C, H, W) float32 -> (C, *size)."""
    if arr.shape[1:] == tuple(size):
        return arr
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    out = [
        np.asarray(Image.fromarray(ch).resize((size[1], size[0]), resample=resample))
        for ch in arr.astype(np.float32)
    ]
    return np.stack(out).astype(np.float32)


def _binary_mask(arr: np.ndarray, path: Path) -> np.ndarray:
    """Accept {0, v} masks (v any single non-zero value, e.g. 1 or 255); reject soft masks."""
    if arr.ndim == 3:
        if not all(np.array_equal(arr[..., 0], arr[..., k]) for k in range(1, arr.shape[2])):
            raise DataError(f"mask {path} has differing colour channels; expected a binary mask")
        arr = arr[..., 0]
    values = np.unique(arr)
    nonzero = values[values != 0]
    if len(nonzero) > 1:
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DataError(
            f"mask {path} is not binary: it holds {len(values)} values ({shown}); "
            "a binary task needs 0 for background and one value for foreground"
        )
    return (arr != 0).astype(np.uint8)


def _label_mask(arr: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """A multi-class mask: a label map whose pixel values are class indices 0..num_classes-1."""
    if arr.ndim == 3:
        if not all(np.array_equal(arr[..., 0], arr[..., k]) for k in range(1, arr.shape[2])):
            raise DataError(f"mask {path} has differing colour channels; expected a label map")
        arr = arr[..., 0]
    values = np.unique(arr)
    bad = values[(values < 0) | (values >= num_classes)]
    if len(bad) or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"mask {path} holds labels {values[:8].tolist()}; a {num_classes}-class task needs "
            f"integer labels 0..{num_classes - 1} (0 = background)"
        )
    return arr.astype(np.uint8)


def _load_pair(
    image_path: Path,
    mask_paths: Sequence[Path],
    size: tuple[int, int],
    channels: int,
    num_classes: int,
    spec: Intensity,
    notes: _Notes,
) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_array(image_path)
    image = _to_channels(_scale01(raw, image_path, spec, notes), channels, image_path, notes)
    mask = np.zeros(raw.shape[:2], dtype=np.uint8)
    for mp in mask_paths:
        arr = _read_array(mp)
        m = _binary_mask(arr, mp) if num_classes <= 2 else _label_mask(arr, mp, num_classes)
        if m.shape != raw.shape[:2]:
            raise DataError(
                f"mask {mp} is {m.shape[1]}x{m.shape[0]} (WxH) but its image {image_path} is "
                f"{raw.shape[1]}x{raw.shape[0]}"
            )
        mask = np.maximum(mask, m)  # BUSI: several lesion masks of one image are merged
    image = _resize(image, size, nearest=False)
    mask_r = _resize(mask[None].astype(np.float32), size, nearest=True)
    return np.clip(image, 0.0, 1.0), np.rint(mask_r).astype(np.uint8)


def _stack(
    pairs: list[tuple[str, Path, list[Path]]],
    size: tuple[int, int],
    channels: int,
    source: str,
    num_classes: int = 1,
    intensity: Intensity | None = None,
) -> SegDataset:
    if not pairs:
        raise DataError(f"no image/mask pairs found in {source}")
    notes = _Notes(intensity or Intensity())
    images, masks, names = [], [], []
    for name, ip, mps in pairs:
        img, msk = _load_pair(ip, mps, size, channels, num_classes, notes.requested, notes)
        images.append(img)
        masks.append(msk)
        names.append(name)
    log.info("loaded %d images from %s", len(names), source)
    notes.log(source)
    return SegDataset(
        np.stack(images).astype(np.float32), np.stack(masks), tuple(names), source, notes.meta()
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def matched_stems(
    items: dict[str, Path],
    labels: dict[str, Path],
    item_dir: Path,
    label_dir: Path,
    words: tuple[str, str] = ("image", "mask"),
) -> list[str]:
    """The stems ``items`` and ``labels`` share, sorted; a DataError names the first item
    without a label (and how many) or the first label without an item."""
    item, label = words
    missing = sorted(set(items) - set(labels))
    if missing:
        raise DataError(
            f"{item} {items[missing[0]]} has no {label} in {label_dir} "
            f"({len(missing)} {item}(s) without a {label})"
        )
    orphans = sorted(set(labels) - set(items))
    if orphans:
        raise DataError(f"{label} {labels[orphans[0]]} has no {item} in {item_dir}")
    return sorted(items)


def dataset_from_folder(
    root: str | Path,
    size: tuple[int, int] = DEFAULT_SIZE,
    channels: int = 1,
    num_classes: int = 1,
    intensity: Intensity | None = None,
) -> SegDataset:
    """`root/images/X.ext` paired with `root/masks/X.ext'` by file stem.

    Returns images (N, channels, *size) in [0, 1] and masks (N, 1, *size): {0, 1} for a binary
    task (num_classes 1 or 2; masks {0, v}), else label maps with values 0..num_classes-1.
    ``intensity`` (default ``auto``) says how pixels become [0, 1]; meta["intensity"] records
    it. Raises DataError naming the file for an image without a mask, a mask without an image,
    an unreadable file, a mask of a different size, a non-binary mask, or an image that the
    intensity scaling leaves degenerate.
    """
    root = Path(root)
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"{root} needs an images/ and a masks/ folder; {d} is missing")
    images = {p.stem: p for p in _image_files(img_dir)}
    masks = {p.stem: p for p in _image_files(mask_dir)}
    if not images:
        raise DataError(f"no images in {img_dir} (looked for {', '.join(IMAGE_SUFFIXES)})")
    stems = matched_stems(images, masks, img_dir, mask_dir)
    pairs = [(stem, images[stem], [masks[stem]]) for stem in stems]
    return _stack(pairs, size, channels, str(root), num_classes, intensity)


def dataset_from_busi(
    root: str | Path,
    size: tuple[int, int] = DEFAULT_SIZE,
    channels: int = 1,
    intensity: Intensity | None = None,
) -> SegDataset:
    """The BUSI layout: `benign (1).png` with `benign (1)_mask.png` and any `_mask_1.png` ...
    (merged), searched recursively (e.g. benign/, malignant/, normal/ subfolders)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images: dict[Path, Path] = {}
    masks: dict[Path, list[Path]] = {}
    for p in files:
        m = _BUSI_MASK.match(p.stem)
        if m:
            masks.setdefault(p.with_name(m.group("stem") + p.suffix), []).append(p)
        else:
            images[p] = p
    if not images:
        raise DataError(f"no images found under {root}")
    without = [p for p in images if p not in masks]
    if without:
        raise DataError(
            f"image {without[0]} has no mask (expected {without[0].stem}_mask{without[0].suffix};"
            f" {len(without)} image(s) without a mask)"
        )
    orphan = [k for k in masks if k not in images]
    if orphan:
        raise DataError(f"mask {masks[orphan[0]][0]} has no image {orphan[0].name}")
    pairs = [
        (str(p.relative_to(root).with_suffix("")), p, sorted(masks[p])) for p in sorted(images)
    ]
    return _stack(pairs, size, channels, str(root), 1, intensity)


def bundled_dataset_path(name: str = "nuclei", split: str = "test") -> Path:
    """Folder of a bundled split (`nuclei` or `lesions`; `train` or `test`)."""
    if name not in BUNDLED:
        raise DataError(f"unknown bundled dataset {name!r}; choose one of {', '.join(BUNDLED)}")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; choose train or test")
    return Path(str(resources.files("segshield.data") / "resources" / name / split))


def bundled_dataset(
    name: str = "nuclei", split: str = "test", size: tuple[int, int] = DEFAULT_SIZE
) -> SegDataset:
    """A split of the real sample data shipped inside the package (see resources/README.md)."""
    ds = dataset_from_folder(bundled_dataset_path(name, split), size=size, channels=1)
    meta = {"licence": "BSD-3-Clause", **ds.meta}
    return SegDataset(ds.images, ds.masks, ds.names, f"bundled:{name}/{split}", meta)


def target_mask_from_file(path: str | Path, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """A user-drawn target mask for targeted attacks: one binary image -> (1, *size) uint8."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"target mask {path} does not exist")
    mask = _binary_mask(_read_array(path), path)
    resized = _resize(mask[None].astype(np.float32), size, nearest=True)
    return (resized > 0.5).astype(np.uint8)
