"""Writers of real medical files (nibabel, pynrrd, pydicom) for the data tests, as fixtures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest


def _nifti(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0), affine=None) -> Path:
    import nibabel as nib

    if affine is None:
        affine = np.diag([*spacing, 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def _nrrd(path: Path, arr: np.ndarray, header: dict | None = None) -> Path:
    import nrrd

    path.parent.mkdir(parents=True, exist_ok=True)
    nrrd.write(str(path), arr, header or {})
    return path


def _dicom_slice(
    path: Path,
    stored: np.ndarray,
    z: float,
    instance: int,
    series: str,
    slope: float = 1.0,
    intercept: float = -1024.0,
    modality: str = "CT",
) -> Path:
    """One CT slice: stored uint16 12-bit values (rows, cols), at position (0, 0, z)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = modality, series, instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.5]  # between rows, between columns
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _dicom_series(
    folder: Path,
    stored: np.ndarray,
    zs: Sequence[float],
    series: str = "1.2.826.0.1.3680043.8.498.1",
    **kw,
) -> Path:
    """stored: (slices, rows, cols) written one file per slice, in a shuffled file order
    (names and instance numbers do not follow the positions)."""
    order = np.random.default_rng(0).permutation(len(zs))
    for name_idx, k in enumerate(order):
        _dicom_slice(
            folder / f"IM{name_idx:04d}.dcm", stored[k], zs[k], int(order[-1 - name_idx]) + 1,
            series, **kw,
        )  # fmt: skip
    return folder


@pytest.fixture
def write_nifti() -> Callable[..., Path]:
    pytest.importorskip("nibabel", reason="the [medical] extra (nibabel) is not installed")
    return _nifti


@pytest.fixture
def write_nrrd() -> Callable[..., Path]:
    pytest.importorskip("nrrd", reason="the [medical] extra (pynrrd) is not installed")
    return _nrrd


@pytest.fixture
def write_dicom_series() -> Callable[..., Path]:
    pytest.importorskip("pydicom", reason="the [medical] extra (pydicom) is not installed")
    return _dicom_series


@pytest.fixture
def write_dicom_slice() -> Callable[..., Path]:
    pytest.importorskip("pydicom", reason="the [medical] extra (pydicom) is not installed")
    return _dicom_slice
