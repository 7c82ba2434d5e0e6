"""Readers for medical volumes: NIfTI (nibabel), NRRD (pynrrd), DICOM series and files (pydicom).

The field's own libraries, imported lazily: the ``[medical]`` extra is optional and a missing
one is a DataError with the install hint, never an ImportError traceback. (MONAI's
``LoadImage`` wraps the same three; calling them directly keeps the data layer free of MONAI.)

Every reader returns a :class:`Volume` whose array is in the file's voxel order as nibabel,
pynrrd and MONAI's ``LoadImage`` give it: axes (x, y, z) = (i, j, k), i.e. for DICOM
(columns, rows, slices). No reorientation: ``axcodes`` says where each axis points, and
``spacing`` is in mm per array axis. A 2D image gets a z axis of length 1; channels
(multi-modal 4D NIfTI, RGB DICOM, NRRD vector axes) are the last axis.
"""

from __future__ import annotations

import importlib
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from segshield.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "INSTALL_HINT",
    "VOLUME_SUFFIXES",
    "Volume",
    "is_volume_path",
    "read_volume",
    "volume_channels",
    "volume_stem",
]

INSTALL_HINT = "pip install 'segshield[medical]'"
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".dcm")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# Errors a corrupt file raises inside the readers (besides the libraries' own types).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, zlib.error)


@dataclass(frozen=True)
class Volume:
    """One image or label volume.

    array: (X, Y, Z) or (X, Y, Z, C), the file's voxel order, raw values (HU for CT after
    DICOM rescale); spacing: mm per spatial axis; modality: e.g. "CT", "MR" when the file says;
    affine: 4x4 voxel index -> RAS+ world mm (None when unknown); axcodes: the RAS letter each
    axis increases towards, e.g. ("L", "P", "S") for an LPS-ordered NRRD.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    modality: str | None = None
    affine: np.ndarray | None = None
    axcodes: tuple[str, str, str] | None = None
    source: str = ""

    @property
    def channels(self) -> int:
        return int(self.array.shape[3]) if self.array.ndim == 4 else 1

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        x, y, z = self.array.shape[:3]
        return int(x), int(y), int(z)


def _require(module: str, path: Path) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DataError(
            f"reading {path} needs {module}, which is not installed: {INSTALL_HINT}"
        ) from exc


def volume_stem(path: Path) -> str:
    """The case name: the file name without .nii.gz / .nii / .nrrd / .nhdr / .dcm."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    if path.suffix:  # other suffixes (.txt, .json, .png) are not DICOM
        return False
    try:
        with path.open("rb") as fh:
            return fh.read(132)[128:] == b"DICM"  # the DICOM Part 10 preamble marker
    except OSError:
        return False


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and _is_dicom_file(p)
    )


def is_volume_path(path: Path) -> bool:
    """A NIfTI/NRRD/DICOM file, or a folder holding a DICOM series."""
    if path.is_dir():
        return bool(_dicom_files(path))
    return path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES)


def read_volume(path: str | Path) -> Volume:
    """Read a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), DICOM file or DICOM series folder.

    Raises DataError naming the file: missing, unreadable or corrupt, mixed DICOM series,
    or the reader library missing (with the install hint).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"volume {path} does not exist")
    lower = path.name.lower()
    if path.is_dir():
        files = _dicom_files(path)
        if not files:
            raise DataError(f"{path} is a folder without DICOM files (.dcm or a DICM header)")
        from segshield.data.dicom import read_dicom_series

        return read_dicom_series(path, files, _require("pydicom", path))
    if lower.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if lower.endswith((".nrrd", ".nhdr")):
        return _read_nrrd(path)
    if _is_dicom_file(path):
        from segshield.data.dicom import read_dicom_series

        return read_dicom_series(path, [path], _require("pydicom", path))
    raise DataError(
        f"{path} is not a volume segshield reads (.nii, .nii.gz, .nrrd, .nhdr, .dcm or a "
        "DICOM series folder)"
    )


def axcodes_from_affine(affine: np.ndarray) -> tuple[str, str, str]:
    """RAS letters each voxel axis increases towards (as nibabel's ``aff2axcodes``)."""
    letters = (("L", "R"), ("P", "A"), ("I", "S"))
    out = []
    for k in range(3):
        col = affine[:3, k]
        j = int(np.argmax(np.abs(col)))
        out.append(letters[j][1] if col[j] > 0 else letters[j][0])
    return out[0], out[1], out[2]


def _spatial3(arr: np.ndarray, spacing: list[float], path: Path) -> tuple[np.ndarray, list]:
    """(X, Y) -> (X, Y, 1); (X, Y, Z[, C]) kept; anything else refused."""
    if arr.ndim == 2:
        arr, spacing = arr[:, :, None], [*spacing[:2], 1.0]
    if arr.ndim not in (3, 4) or arr.size == 0:
        raise DataError(f"volume {path} has unsupported shape {arr.shape}")
    return arr, spacing


def _read_nifti(path: Path) -> Volume:
    nib = _require("nibabel", path)
    try:
        img = nib.load(str(path))
        # dataobj applies scl_slope/scl_inter as the file asks (a float array when they are set)
        arr = np.asanyarray(img.dataobj)
        zooms = [float(z) for z in img.header.get_zooms()]
        affine = np.asarray(img.affine, dtype=np.float64)
    except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
        raise DataError(f"cannot read NIfTI {path}: {type(exc).__name__}: {exc}") from exc
    if arr.ndim == 5 and arr.shape[3] == 1:  # NIfTI vector images: (X, Y, Z, 1, C)
        arr = arr[:, :, :, 0]
    arr, spacing = _spatial3(arr, zooms[:3] + [1.0] * (3 - len(zooms[:3])), path)
    return Volume(
        np.ascontiguousarray(arr),
        (spacing[0], spacing[1], spacing[2]),
        None,
        affine,
        axcodes_from_affine(affine),
        str(path),
    )


_RAS_FLIP = {"left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1)}
_RAS_SAME = ("right-anterior-superior", "ras")


def _nrrd_geometry(header: dict, ndim: int) -> tuple[list[int], list[float], np.ndarray | None]:
    """Spatial axes, their spacing and the RAS affine (None without space directions)."""
    directions = header.get("space directions")
    if directions is None:
        spacings = header.get("spacings")
        axes = list(range(min(ndim, 3)))
        sp = [float(spacings[a]) if spacings is not None else 1.0 for a in axes]
        return axes, [v if np.isfinite(v) and v > 0 else 1.0 for v in sp], None
    dirs = [None if d is None else np.asarray(d, dtype=np.float64) for d in directions]
    axes = [a for a, d in enumerate(dirs) if d is not None and np.isfinite(d).all()]
    vectors = [dirs[a] for a in axes]
    spacing = [float(np.linalg.norm(v)) or 1.0 for v in vectors]
    space = str(header.get("space", "")).lower()
    if len(axes) != 3 or not (space in _RAS_FLIP or space in _RAS_SAME):
        return axes, spacing, None
    affine = np.eye(4)
    affine[:3, :3] = np.stack(vectors, axis=1)
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    if space in _RAS_FLIP:
        affine[:3] *= np.asarray(_RAS_FLIP[space], dtype=np.float64)[:, None]
    return axes, spacing, affine


def _read_nrrd(path: Path) -> Volume:
    nrrd = _require("nrrd", path)
    try:
        arr, header = nrrd.read(str(path))  # index order F: (x, y, z), as the header lists them
    except (nrrd.NRRDError, *_READ_ERRORS) as exc:
        raise DataError(f"cannot read NRRD {path}: {type(exc).__name__}: {exc}") from exc
    axes, spacing, affine = _nrrd_geometry(header, arr.ndim)
    others = [a for a in range(arr.ndim) if a not in axes]
    if len(axes) not in (2, 3) or len(others) > 1:
        raise DataError(f"NRRD {path} has {len(axes)} spatial axes in shape {arr.shape}")
    arr = np.transpose(arr, axes + others)  # a vector/list axis (channels) goes last
    arr, spacing = _spatial3(arr, spacing, path)
    axcodes = axcodes_from_affine(affine) if affine is not None else None
    sp = (spacing[0], spacing[1], spacing[2])
    return Volume(np.ascontiguousarray(arr), sp, None, affine, axcodes, str(path))


def volume_channels(path: str | Path) -> int:
    """The channel count of a volume from its header (no pixel data read where possible)."""
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        nib = _require("nibabel", path)
        try:
            shape = nib.load(str(path)).shape
        except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
            raise DataError(f"cannot read NIfTI {path}: {exc}") from exc
        return int(shape[-1]) if len(shape) >= 4 else 1
    if lower.endswith((".nrrd", ".nhdr")):
        nrrd = _require("nrrd", path)
        try:
            header = nrrd.read_header(str(path))
        except (nrrd.NRRDError, *_READ_ERRORS) as exc:
            raise DataError(f"cannot read NRRD {path}: {exc}") from exc
        axes, _, _ = _nrrd_geometry(header, int(header["dimension"]))
        others = [int(s) for a, s in enumerate(header["sizes"]) if a not in axes]
        return others[0] if others else 1
    return read_volume(path).channels
