"""Loaders: `dataset_from_folder` (images/ + masks/ by stem), `dataset_from_busi` (BUSI layout),
`dataset_from_path` (detects which), `bundled_dataset` (the real sample data shipped inside).

Preprocessing follows seed unet-busi: intensities scaled to [0, 1] by the dtype's range, then
resized to a configured size (default 128x128; bilinear for images, nearest for masks).
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


def _scale01(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale integer images by their dtype's maximum, floats must already be in [0, 1]."""
    if np.issubdtype(arr.dtype, np.bool_):
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise DataError(f"float image {path} must hold finite values in [0, 1]")
    return arr


def _to_channels(arr: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """(H, W) or (H, W, C) -> (channels, H, W)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 4:  # drop alpha
        arr = arr[..., :3]
    if channels == 1 and arr.shape[2] == 3:
        # ITU-R 601 luma, as PIL's "L" conversion.
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = arr[..., None]
    elif channels == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] != channels:
        raise DataError(f"image {path} has {arr.shape[2]} channels, expected {channels}")
    return np.transpose(arr, (2, 0, 1))


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
    num_classes: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_array(image_path)
    image = _to_channels(_scale01(raw, image_path), channels, image_path)
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
) -> SegDataset:
    if not pairs:
        raise DataError(f"no image/mask pairs found in {source}")
    images, masks, names = [], [], []
    for name, ip, mps in pairs:
        img, msk = _load_pair(ip, mps, size, channels, num_classes)
        images.append(img)
        masks.append(msk)
        names.append(name)
    log.info("loaded %d images from %s", len(names), source)
    return SegDataset(np.stack(images).astype(np.float32), np.stack(masks), tuple(names), source)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def dataset_from_folder(
    root: str | Path, size: tuple[int, int] = DEFAULT_SIZE, channels: int = 1, num_classes: int = 1
) -> SegDataset:
    """`root/images/X.ext` paired with `root/masks/X.ext'` by file stem.

    Returns images (N, channels, *size) in [0, 1] and masks (N, 1, *size): {0, 1} for a binary
    task (num_classes 1 or 2; masks {0, v}), else label maps with values 0..num_classes-1.
    Raises DataError naming the file for an image without a mask, a mask without an image,
    an unreadable file, a mask of a different size or a non-binary mask.
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
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(
            f"image {images[missing[0]]} has no mask in {mask_dir} "
            f"({len(missing)} image(s) without a mask)"
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(f"mask {masks[orphans[0]]} has no image in {img_dir}")
    pairs = [(stem, images[stem], [masks[stem]]) for stem in sorted(images)]
    return _stack(pairs, size, channels, str(root), num_classes)


def dataset_from_busi(
    root: str | Path, size: tuple[int, int] = DEFAULT_SIZE, channels: int = 1
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
    return _stack(pairs, size, channels, str(root))


def dataset_from_path(
    root: str | Path, size: tuple[int, int] = DEFAULT_SIZE, channels: int = 1, num_classes: int = 1
) -> SegDataset:
    """`images/`+`masks/` when both folders exist, else the BUSI layout (binary only)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return dataset_from_folder(root, size, channels, num_classes)
    if num_classes > 2:
        raise DataError(f"{root}: multi-class masks need the images/ + masks/ layout")
    return dataset_from_busi(root, size, channels)


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
    return SegDataset(
        ds.images, ds.masks, ds.names, f"bundled:{name}/{split}", {"licence": "BSD-3-Clause"}
    )


def target_mask_from_file(path: str | Path, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """A user-drawn target mask for targeted attacks: one binary image -> (1, *size) uint8."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"target mask {path} does not exist")
    mask = _binary_mask(_read_array(path), path)
    resized = _resize(mask[None].astype(np.float32), size, nearest=True)
    return (resized > 0.5).astype(np.uint8)
