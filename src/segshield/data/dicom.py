"""DICOM series and files -> :class:`~segshield.data.medical.Volume` (pydicom).

A series folder: every DICOM file with pixel data, one SeriesInstanceUID (mixed series are
refused), slices sorted along the slice normal (ImagePositionPatient projected on the cross
product of the ImageOrientationPatient row and column directions; InstanceNumber without
positions), RescaleSlope/Intercept applied (HU for CT), spacing from PixelSpacing and the
slice positions. The array is (columns, rows, slices) = (x, y, z), as NIfTI and MONAI's
``PydicomReader`` order it; the affine maps to RAS+ (DICOM's patient frame is LPS).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from segshield.data.medical import INSTALL_HINT, Volume, axcodes_from_affine
from segshield.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["read_dicom_series"]

# Relative spread of slice gaps above which the spacing is reported as uneven.
_UNEVEN = 0.1


def _read_all(files: list[Path], pydicom: ModuleType) -> list:
    out = []
    for p in files:
        try:
            ds = pydicom.dcmread(str(p))
        except pydicom.errors.InvalidDicomError as exc:
            raise DataError(f"{p} is not a valid DICOM file: {exc}") from exc
        except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read DICOM {p}: {type(exc).__name__}: {exc}") from exc
        if "PixelData" in ds:  # DICOMDIR, structured reports ... hold no image
            out.append((p, ds))
    return out


def _pixels(p: Path, ds) -> np.ndarray:
    """(frames, rows, cols[, samples]) with the modality rescale applied."""
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for missing codecs and bad data
        raise DataError(
            f"cannot decode the pixel data of {p} (transfer syntax "
            f"{getattr(ds.file_meta, 'TransferSyntaxUID', '?')}): {exc}; compressed DICOM "
            f"may need pip install pylibjpeg pylibjpeg-libjpeg (besides {INSTALL_HINT})"
        ) from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[None]
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    if slope != 1.0 or intercept != 0.0:
        if slope == 1.0 and intercept == int(intercept):
            arr = arr.astype(np.int32) + int(intercept)  # integer HU stay integers
        else:
            arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        # MONOCHROME1 displays low values as white: invert so that bright means high
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" else np.int32)
        arr = arr.max() + arr.min() - arr
    return arr


def _orientation(ds) -> tuple[np.ndarray, np.ndarray] | None:
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray([float(x) for x in iop])
    return v[:3], v[3:]


def _sort(items: list, where: Path) -> tuple[list, np.ndarray | None]:
    """Slices sorted along the normal; their positions along it (None without IPP/IOP)."""
    orient = _orientation(items[0][1])
    have_pos = orient is not None and all(
        getattr(ds, "ImagePositionPatient", None) is not None for _, ds in items
    )
    if not have_pos:
        items = sorted(items, key=lambda it: int(getattr(it[1], "InstanceNumber", 0) or 0))
        return items, None
    normal = np.cross(*orient)  # type: ignore[misc]
    pos = np.asarray([float(np.dot(normal, ds.ImagePositionPatient)) for _, ds in items])
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    if len(pos) > 1 and np.min(np.diff(pos)) < 1e-4:
        k = int(np.argmin(np.diff(pos)))
        a, b = items[order[k]][0].name, items[order[k + 1]][0].name
        raise DataError(
            f"DICOM series {where}: {a} and {b} lie at the same position; several "
            "acquisitions (echoes, phases) share the series: give one per folder"
        )
    return [items[i] for i in order], pos


def _check_one_series(items: list, where: Path) -> None:
    uids = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in items}
    if len(uids) > 1:
        shown = ", ".join(sorted(uids)[:3])
        raise DataError(
            f"{where} mixes {len(uids)} DICOM series ({shown}); put each series in its own folder"
        )
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in items}
    if len(shapes) > 1:
        raise DataError(f"DICOM series {where} mixes slice sizes {sorted(shapes)}")
    orients = set()
    for _, ds in items:
        o = _orientation(ds)
        orients.add(None if o is None else tuple(np.round(np.concatenate(o), 4)))
    if len(orients) > 1:
        raise DataError(f"DICOM series {where} mixes slice orientations")


def _slice_gap(ds, pos: np.ndarray | None, where: Path) -> float:
    if pos is not None and len(pos) > 1:
        gaps = np.diff(pos)
        gap = float(np.median(gaps))
        if (gaps.max() - gaps.min()) > _UNEVEN * gap:
            log.warning(
                "DICOM series %s: uneven slice spacing %.3g..%.3g mm (median %.3g used)",
                where, gaps.min(), gaps.max(), gap,
            )  # fmt: skip
        return gap
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        value = getattr(ds, tag, None)
        if value:
            return float(value)
    return 1.0


def read_dicom_series(where: Path, files: list[Path], pydicom: ModuleType) -> Volume:
    """A series folder (``files`` its DICOM files) or one (possibly multi-frame) file."""
    items = _read_all(files, pydicom)
    if not items:
        raise DataError(f"no DICOM file with pixel data in {where}")
    _check_one_series(items, where)
    items, pos = _sort(items, where)
    first = items[0][1]
    slices = [_pixels(p, ds) for p, ds in items]
    if any(s.dtype.kind == "f" for s in slices):
        slices = [s.astype(np.float32) for s in slices]
    stack = np.concatenate(slices, axis=0)  # (slices, rows, cols[, samples])
    if stack.dtype == np.int32 and stack.min() >= -32768 and stack.max() <= 32767:
        stack = stack.astype(np.int16)  # HU after an integer rescale fit int16, as CT stores
    arr = np.swapaxes(stack, 0, 2)  # (cols, rows, slices[, samples]) = (x, y, z)
    ps = getattr(first, "PixelSpacing", None)
    row_sp, col_sp = (float(ps[0]), float(ps[1])) if ps is not None else (1.0, 1.0)
    if ps is None:
        log.warning("DICOM %s has no PixelSpacing: 1 mm assumed", where)
    gap = _slice_gap(first, pos, where)
    affine, axcodes = None, None
    orient = _orientation(first)
    if orient is not None and getattr(first, "ImagePositionPatient", None) is not None:
        row_dir, col_dir = orient
        lps = np.eye(4)
        lps[:3, 0], lps[:3, 1] = row_dir * col_sp, col_dir * row_sp
        lps[:3, 2] = np.cross(row_dir, col_dir) * gap
        lps[:3, 3] = [float(v) for v in first.ImagePositionPatient]
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
        axcodes = axcodes_from_affine(affine)
    modality = str(getattr(first, "Modality", "")) or None
    return Volume(
        np.ascontiguousarray(arr), (col_sp, row_sp, gap), modality, affine, axcodes, str(where)
    )
