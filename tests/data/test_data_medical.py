"""Readers of real NIfTI, NRRD and DICOM files written here with nibabel, pynrrd and pydicom:
voxel order, spacing, orientation, DICOM slice sorting and HU, and every error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from segshield.data import INSTALL_HINT, read_volume
from segshield.data.medical import volume_channels
from segshield.errors import DataError


def test_nifti_keeps_voxel_order_and_spacing(tmp_path: Path, write_nifti) -> None:
    arr = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)
    path = write_nifti(tmp_path / "ct.nii.gz", arr, spacing=(0.5, 0.75, 2.5))
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.array.dtype == np.int16
    assert vol.spacing == (0.5, 0.75, 2.5)
    assert vol.axcodes == ("R", "A", "S") and vol.modality is None
    assert vol.spatial_shape == (4, 3, 2) and vol.channels == 1


def test_nifti_2d_and_4d(tmp_path: Path, write_nifti) -> None:
    flat = read_volume(write_nifti(tmp_path / "a.nii", np.ones((5, 6), np.float32)))
    assert flat.array.shape == (5, 6, 1)
    multi = np.zeros((5, 6, 3, 2), np.float32)
    multi[..., 1] = 1.0
    vol = read_volume(write_nifti(tmp_path / "b.nii.gz", multi))
    assert vol.channels == 2 and vol.spatial_shape == (5, 6, 3)
    assert volume_channels(tmp_path / "b.nii.gz") == 2
    assert vol.array[..., 1].min() == 1.0


def test_nrrd_lps_space_directions(tmp_path: Path, write_nrrd) -> None:
    arr = np.random.default_rng(0).integers(-1000, 1000, (6, 5, 4)).astype(np.int16)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.8, 0.8, 3.0]),
        "space origin": np.array([10.0, 20.0, 30.0]),
    }
    vol = read_volume(write_nrrd(tmp_path / "lung_image.nrrd", arr, header))
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.spacing == pytest.approx((0.8, 0.8, 3.0))
    # LPS +x points left, +y posterior: in RAS+ the affine flips x and y
    assert vol.axcodes == ("L", "P", "S")
    np.testing.assert_allclose(vol.affine[:3, 3], [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(np.diag(vol.affine)[:3], [-0.8, -0.8, 3.0])


def test_nrrd_spacings_only(tmp_path: Path, write_nrrd) -> None:
    path = write_nrrd(tmp_path / "x.nrrd", np.zeros((3, 4, 5), np.uint8), {"spacings": [1, 2, 3]})
    vol = read_volume(path)
    assert vol.spacing == (1.0, 2.0, 3.0) and vol.affine is None and vol.axcodes is None


def test_nrrd_vector_axis_becomes_channels(tmp_path: Path, write_nrrd) -> None:
    arr = np.zeros((3, 6, 5, 4), np.float32)  # (rgb, x, y, z), as Slicer writes colour volumes
    arr[2] = 1.0
    header = {
        "space": "left-posterior-superior",
        "space directions": [[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]],
        "kinds": ["vector", "domain", "domain", "domain"],
    }
    path = write_nrrd(tmp_path / "rgb.nrrd", arr, header)
    vol = read_volume(path)
    assert vol.array.shape == (6, 5, 4, 3) and vol.spacing == (1.0, 1.0, 2.0)
    assert vol.array[..., 2].min() == 1.0 and vol.array[..., :2].max() == 0.0
    assert volume_channels(path) == 3


def _stored(n: int = 5, rows: int = 8, cols: int = 6) -> np.ndarray:
    """(slices, rows, cols) 12-bit stored values; slice k holds 1000 + 100 k + its pixel index."""
    base = np.arange(rows * cols).reshape(rows, cols)
    return np.stack([1000 + 100 * k + base for k in range(n)]).astype(np.uint16)


def test_dicom_series_sorted_by_position_with_hu(tmp_path: Path, write_dicom_series) -> None:
    stored = _stored()
    zs = [10.0, 12.5, 15.0, 17.5, 20.0]
    folder = write_dicom_series(tmp_path / "ct", stored, zs)
    (tmp_path / "ct" / "notes.txt").write_text("not DICOM")  # other files are ignored
    vol = read_volume(folder)
    assert vol.modality == "CT"
    assert vol.array.shape == (6, 8, 5)  # (columns, rows, slices) = (x, y, z)
    assert vol.array.dtype == np.int16
    assert vol.spacing == pytest.approx((0.5, 0.7, 2.5))
    # HU = stored - 1024, slices in position order whatever the file and instance order
    for k in range(5):
        np.testing.assert_array_equal(vol.array[:, :, k], stored[k].T.astype(np.int32) - 1024)
    assert vol.axcodes == ("L", "P", "S")
    np.testing.assert_allclose(vol.affine[:3, 3], [0.0, 0.0, 10.0])


def test_dicom_float_rescale(tmp_path: Path, write_dicom_series) -> None:
    stored = _stored(n=2)
    vol = read_volume(
        write_dicom_series(tmp_path / "s", stored, [0.0, 1.0], slope=0.5, intercept=-10.0)
    )
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array[0, 0, :], [1000 * 0.5 - 10, 1100 * 0.5 - 10])


def test_dicom_mixed_series_is_refused(
    tmp_path: Path, write_dicom_series, write_dicom_slice
) -> None:
    write_dicom_series(tmp_path / "mix", _stored(n=2), [0.0, 1.0], series="1.2.3.1")
    write_dicom_slice(tmp_path / "mix" / "other.dcm", _stored(n=1)[0], 5.0, 9, "1.2.3.2")
    with pytest.raises(DataError, match=r"mix mixes 2 DICOM series \(1\.2\.3\.1, 1\.2\.3\.2\)"):
        read_volume(tmp_path / "mix")


def test_dicom_two_slices_at_one_position(tmp_path: Path, write_dicom_series) -> None:
    write_dicom_series(tmp_path / "echo", _stored(n=2), [4.0, 4.0])
    with pytest.raises(DataError, match="lie at the same position; several acquisitions"):
        read_volume(tmp_path / "echo")


def test_pydicom_ct_test_file() -> None:
    """A real CT slice from pydicom's wheel (pydicom/data/test_files, no download)."""
    data = pytest.importorskip("pydicom.data", reason="pydicom is not installed")
    try:
        path = data.get_testdata_file("CT_small.dcm", download=False)
    except TypeError:  # older pydicom without the download argument
        path = data.get_testdata_file("CT_small.dcm")
    if path is None:
        pytest.skip("pydicom's CT_small.dcm test file is not installed")
    import pydicom

    raw = pydicom.dcmread(path).pixel_array
    vol = read_volume(path)
    assert vol.modality == "CT" and vol.array.shape == (128, 128, 1)
    np.testing.assert_array_equal(vol.array[:, :, 0], raw.T.astype(np.int32) - 1024)
    assert vol.spacing == pytest.approx((0.661468, 0.661468, 5.0))


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("bad.nii.gz", r"cannot read NIfTI .*bad\.nii\.gz"),
        ("bad.nrrd", r"cannot read NRRD .*bad\.nrrd"),
        ("bad.dcm", r".*bad\.dcm is not a valid DICOM file"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path: Path, name: str, match: str) -> None:
    pytest.importorskip("nibabel", reason="the [medical] extra is not installed")
    pytest.importorskip("nrrd", reason="the [medical] extra is not installed")
    pytest.importorskip("pydicom", reason="the [medical] extra is not installed")
    path = tmp_path / name
    path.write_bytes(b"this is not a medical image at all" * 10)
    with pytest.raises(DataError, match=match):
        read_volume(path)


def test_unknown_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"a\.png is not a volume segshield reads"):
        read_volume(tmp_path / "a.png")
    with pytest.raises(DataError, match="does not exist"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder without DICOM files"):
        read_volume(tmp_path / "empty")


def test_missing_library_gives_the_install_hint(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "x.nii.gz").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "nibabel", None)  # `import nibabel` now raises ImportError
    with pytest.raises(DataError) as err:
        read_volume(tmp_path / "x.nii.gz")
    assert "needs nibabel, which is not installed" in str(err.value)
    assert INSTALL_HINT == "pip install 'segshield[medical]'" and INSTALL_HINT in str(err.value)
