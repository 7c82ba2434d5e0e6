"""Which layout a dataset folder has, its channel count, and loading it as the model needs.

Layouts: ``folder`` (images/ + masks/ of 2D images), ``busi`` (``X.png`` + ``X_mask.png``),
``volumes`` (images/ + masks/ of NIfTI/NRRD/DICOM), ``decathlon`` (dataset.json, imagesTr/ +
labelsTr/) and ``pairs`` (``X_image.nrrd`` + ``X_label.nrrd``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segshield.data.dataset import SegDataset
from segshield.data.intensity import Intensity
from segshield.data.loaders import (
    DEFAULT_SIZE,
    IMAGE_SUFFIXES,
    _grey_in_rgb,
    _image_files,
    _read_array,
    dataset_from_busi,
    dataset_from_folder,
)
from segshield.data.medical import volume_channels
from segshield.data.volume_layouts import (
    BUNDLED_VOLUMES_TEST,
    bundled_volumes_path,
    has_volumes,
    volume_pairs,
)
from segshield.data.volumes import (
    DEFAULT_VOLUME_SIZE,
    check_channels,
    slices_from_volumes,
    split_by_volume,
    volumes_dataset,
)
from segshield.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "LAYOUTS",
    "VOLUME_MODES",
    "check_model_input",
    "dataset_from_path",
    "detect_channels",
    "detect_layout",
]

LAYOUTS = ("folder", "busi", "volumes", "decathlon", "pairs")
VOLUME_MODES = ("slices", "volumes", "patches")
_VOLUME_LAYOUTS = ("volumes", "decathlon", "pairs")
# RGB files decoded to tell true colour from grey stored as RGB (the rest by their mode).
_RGB_PROBE = 8


def detect_layout(root: str | Path) -> str:
    """One of ``LAYOUTS``; DataError when ``root`` does not exist."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    if (root / "dataset.json").is_file():
        return "decathlon"
    for img in ("images", "imagesTr"):
        if has_volumes(root / img):
            return "volumes"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    if has_volumes(root):
        return "pairs"
    return "busi"


def _image_channels(files: list[Path]) -> int:
    rgb = []
    for p in files:
        try:
            with warnings.catch_warnings():  # a bomb is refused here too, before any read
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(p) as im:
                    mode = im.mode
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            _read_array(p)  # raises the loaders' one-line refusal, naming the file
            raise
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {p}: {exc}") from exc
        if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
            rgb.append(p)
    for p in rgb[:_RGB_PROBE]:
        arr = _read_array(p)
        arr = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr[..., :3]
        if not _grey_in_rgb(arr):
            return 3
    return 1  # grey, or grey stored as RGB (converted without loss)


def detect_channels(root: str | Path) -> int:
    """The data's channel count: 3 for colour images (RGB whose channels differ), 1 for grey
    (also grey stored as RGB); for volumes the modalities of the first case."""
    root = Path(root)
    layout = detect_layout(root)
    if layout in _VOLUME_LAYOUTS:
        pair = volume_pairs(root)[0]
        return sum(volume_channels(p) for p in pair.images)
    if layout == "folder":
        files = _image_files(root / "images")
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and "_mask" not in p.stem
        )
    if not files:
        raise DataError(f"no images in {root} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return _image_channels(files)


def check_model_input(ds: SegDataset, model_channels: int, model_spatial_dims: int) -> None:
    """DataError when the data do not fit the model: 2D vs 3D, or the channel counts."""
    if ds.ndim_spatial != model_spatial_dims:
        data = "3D volumes (N, C, D, H, W)" if ds.ndim_spatial == 3 else "2D images (N, C, H, W)"
        model = "a 3D model" if model_spatial_dims == 3 else "a 2D model"
        fix = (
            "load the volumes as 2D slices (--volume-mode slices) or use a 3D model"
            if ds.ndim_spatial == 3
            else "give volumes (NIfTI, NRRD, DICOM) with --volume-mode volumes, or use a 2D model"
        )
        raise DataError(f"{ds.source} holds {data} but the model is {model}: {fix}")
    check_channels(ds.image_shape[0], model_channels, ds.source)


def dataset_from_path(
    root: str | Path,
    size: tuple[int, int] = DEFAULT_SIZE,
    channels: int = 1,
    num_classes: int = 1,
    *,
    intensity: Intensity | None = None,
    volume_mode: str = "slices",
    slice_axis: int | str = 2,
    skip_empty: bool = True,
    volume_size: tuple[int, int, int] = DEFAULT_VOLUME_SIZE,
) -> SegDataset:
    """Load ``root`` whatever its layout (see :func:`detect_layout`).

    2D layouts give (N, channels, *size). Volumes give 2D slices (``volume_mode`` "slices",
    along ``slice_axis``, empty ones skipped unless ``skip_empty`` is False), whole volumes
    resized to ``volume_size`` ("volumes"), or patches of ``volume_size`` around the lesion at
    full resolution ("patches"). A folder of 2D images asked as volumes is a DataError.
    """
    root = Path(root)
    if volume_mode not in VOLUME_MODES:
        raise DataError(f"unknown volume mode {volume_mode!r}; choose {', '.join(VOLUME_MODES)}")
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    layout = detect_layout(root)
    if layout not in _VOLUME_LAYOUTS:
        if volume_mode != "slices":
            raise DataError(
                f"{root} holds 2D images ({layout} layout), not volumes: a 3D model needs "
                "NIfTI, NRRD or DICOM volumes; use a 2D model for 2D images"
            )
        if layout == "folder":
            return dataset_from_folder(root, size, channels, num_classes, intensity)
        if num_classes > 2:
            raise DataError(f"{root}: multi-class masks need the images/ + masks/ layout")
        return dataset_from_busi(root, size, channels, intensity)
    pairs = volume_pairs(root)
    common = {"channels": channels, "intensity": intensity, "num_classes": num_classes}
    if volume_mode == "slices":
        ds = slices_from_volumes(pairs, slice_axis, skip_empty, size, source=str(root), **common)
    elif volume_mode == "volumes":
        ds = volumes_dataset(pairs, size=volume_size, source=str(root), **common)
    else:
        ds = volumes_dataset(pairs, patch=volume_size, source=str(root), **common)
    return SegDataset(ds.images, ds.masks, ds.names, ds.source, {"layout": layout, **ds.meta})


def bundled_volumes_dataset(
    split: str = "test", size: tuple[int, int] = DEFAULT_SIZE, **options: object
) -> SegDataset:
    """The bundled lesion volumes (NIfTI), split by patient as the bundled 2D lesion slices
    are (test: ``BUNDLED_VOLUMES_TEST``); ``options`` as :func:`dataset_from_path` takes them
    (``volume_mode``, ``volume_size``, ``channels``, ``intensity`` ...)."""
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; choose train or test")
    ds = dataset_from_path(bundled_volumes_path(), size, **options)  # type: ignore[arg-type]
    train, test = split_by_volume(ds, test_volumes=BUNDLED_VOLUMES_TEST)
    return test if split == "test" else train
