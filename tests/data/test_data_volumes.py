"""Datasets of volumes: layouts (images/+masks/, Decathlon, nnU-Net, flat pairs), 2D slices
(axis, empty slices, names, volume ids, spacing after resize), 3D volumes and patches, the
split by volume, and the bundled real lesion volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segshield.data import (
    BUNDLED_VOLUMES_TEST,
    Intensity,
    SegDataset,
    bundled_volumes_path,
    check_model_input,
    dataset_from_path,
    detect_channels,
    detect_layout,
    parse_window,
    patch_classification_from_segmentation,
    slices_from_volumes,
    split_by_volume,
    volume_pairs,
    volumes_dataset,
)
from segshield.errors import DataError

pytest.importorskip("nibabel", reason="the [medical] extra (nibabel) is not installed")


def _case(
    root: Path,
    name: str,
    write_nifti,
    shape=(20, 10, 4),
    spacing=(1.0, 2.0, 3.0),
    fg_slices=(1, 2),
    sub=("images", "masks"),
) -> None:
    """A volume with a gradient along x and a lesion in ``fg_slices`` (axis 2)."""
    rng = np.random.default_rng(len(name))
    img = (np.arange(shape[0])[:, None, None] * 50 + rng.integers(0, 20, shape)).astype(np.int16)
    lab = np.zeros(shape, np.uint8)
    for k in fg_slices:
        lab[4:12, 2:6, k] = 1
    write_nifti(root / sub[0] / f"{name}.nii.gz", img, spacing)
    write_nifti(root / sub[1] / f"{name}.nii.gz", lab, spacing)


@pytest.fixture
def two_cases(tmp_path: Path, write_nifti) -> Path:
    _case(tmp_path, "p1", write_nifti)
    _case(tmp_path, "p2", write_nifti, fg_slices=(3,))
    return tmp_path


def test_pairs_by_stem(two_cases: Path) -> None:
    pairs = volume_pairs(two_cases)
    assert [p.name for p in pairs] == ["p1", "p2"]
    assert pairs[0].images[0].name == "p1.nii.gz" and pairs[0].mask.name == "p1.nii.gz"
    assert detect_layout(two_cases) == "volumes" and detect_channels(two_cases) == 1


def test_volume_without_label(two_cases: Path) -> None:
    (two_cases / "masks" / "p2.nii.gz").unlink()
    with pytest.raises(DataError, match=r"volume .*p2\.nii\.gz has no label"):
        volume_pairs(two_cases)


def test_slices_skip_empty_names_ids_and_spacing(two_cases: Path) -> None:
    ds = slices_from_volumes(volume_pairs(two_cases), axis=2, size=(5, 10))
    assert ds.names == ("p1:001", "p1:002", "p2:003")
    assert ds.meta["volume"] == ["p1", "p1", "p2"] and ds.meta["slice_index"] == [1, 2, 3]
    assert ds.volume_indices() == {"p1": [0, 1], "p2": [2]}
    assert ds.images.shape == (3, 1, 5, 10) and ds.masks.shape == (3, 1, 5, 10)
    # an axial slice is (H, W) = (y, x) = 10 x 20 voxels of 2 x 1 mm, resized to 5 x 10
    assert ds.meta["spacing"][0] == [pytest.approx(4.0), pytest.approx(2.0)]
    assert ds.meta["volumes"]["p1"]["spacing"] == [1.0, 2.0, 3.0]
    assert ds.meta["volumes"]["p1"]["slice_axis"] == 2
    assert ds.meta["intensity"]["applied"] == [{"mode": "percentile", "low": 0.5, "high": 99.5}]
    every = slices_from_volumes(volume_pairs(two_cases), skip_empty=False, size=(5, 10))
    assert len(every) == 8


@pytest.mark.parametrize(
    ("axis", "hw", "n"), [(0, (4, 10), 20), (1, (4, 20), 10), (2, (10, 20), 4)]
)
def test_slice_axis_and_orientation(two_cases: Path, axis: int, hw: tuple, n: int) -> None:
    pairs = volume_pairs(two_cases)[:1]
    ds = slices_from_volumes(
        pairs, axis=axis, skip_empty=False, size=hw, intensity=Intensity("minmax")
    )
    assert len(ds) == n and ds.images.shape[2:] == hw
    if axis == 2:  # no resize: the slice is the array's slice transposed, rows along y
        import nibabel as nib

        vol = np.asarray(nib.load(two_cases / "images" / "p1.nii.gz").dataobj).astype(float)
        expected = (vol[:, :, 1].T - vol.min()) / (vol.max() - vol.min())
        np.testing.assert_allclose(ds.images[1, 0], expected, atol=1e-6)


def test_plane_names_follow_the_orientation(tmp_path: Path, write_nifti) -> None:
    # voxel axes (x, y, z) point (S, R, A): the axial plane is the slice along axis 0
    affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    img = np.random.default_rng(0).integers(0, 100, (3, 8, 6)).astype(np.int16)
    write_nifti(tmp_path / "images" / "a.nii.gz", img, affine=affine)
    write_nifti(tmp_path / "masks" / "a.nii.gz", np.ones((3, 8, 6), np.uint8), affine=affine)
    pairs = volume_pairs(tmp_path)
    assert len(slices_from_volumes(pairs, axis="axial", size=(6, 8))) == 3
    assert len(slices_from_volumes(pairs, axis="sagittal", size=(6, 3))) == 8
    with pytest.raises(DataError, match="unknown slice axis 'oblique'"):
        slices_from_volumes(pairs, axis="oblique")


def test_intensity_is_scaled_per_volume(tmp_path: Path, write_nifti) -> None:
    img = np.zeros((8, 8, 2), np.int16)
    img[..., 0] = np.arange(8)[:, None] * 10  # a dim slice: 0..70
    img[..., 1] = np.arange(8)[:, None] * 100  # a bright slice: 0..700
    write_nifti(tmp_path / "images" / "v.nii.gz", img)
    write_nifti(tmp_path / "masks" / "v.nii.gz", np.ones((8, 8, 2), np.uint8))
    ds = slices_from_volumes(volume_pairs(tmp_path), size=(8, 8), intensity=Intensity("minmax"))
    assert ds.images[0].max() == pytest.approx(0.1)  # 70 / 700: not stretched per slice
    assert ds.images[1].max() == pytest.approx(1.0)


def test_volumes_dataset_shapes_order_and_spacing(two_cases: Path) -> None:
    pairs = volume_pairs(two_cases)
    ds = volumes_dataset(pairs, size=(4, 10, 20))
    assert ds.images.shape == (2, 1, 4, 10, 20) and ds.masks.shape == (2, 1, 4, 10, 20)
    assert ds.image_shape == (1, 4, 10, 20) and ds.ndim_spatial == 3
    assert ds.names == ("p1", "p2") and ds.meta["axis_order"] == "zyx"
    # (D, H, W) = (z, y, x): a stack of the axial slices
    slices = slices_from_volumes(pairs[:1], skip_empty=False, size=(10, 20))
    np.testing.assert_allclose(ds.images[0, :, 1], slices.images[1], atol=1e-6)
    xyz = volumes_dataset(pairs, size=(20, 10, 4), order="xyz")
    np.testing.assert_allclose(xyz.images[0, 0], ds.images[0, 0].transpose(2, 1, 0), atol=1e-6)
    small = volumes_dataset(pairs, size=(2, 5, 10))
    assert small.meta["spacing"][0] == [pytest.approx(6.0), pytest.approx(4.0), pytest.approx(2.0)]
    assert set(np.unique(small.masks)) <= {0, 1}


def test_patches_hold_the_lesion_at_full_resolution(two_cases: Path) -> None:
    ds = volumes_dataset(volume_pairs(two_cases), patch=(2, 8, 8))
    assert ds.images.shape == (2, 1, 2, 8, 8) and ds.meta["volume_mode"] == "patches"
    assert int(ds.masks[0].sum()) == 2 * 8 * 4  # the whole 8 x 4 lesion on 2 slices
    assert ds.meta["spacing"][0] == [3.0, 2.0, 1.0]
    big = volumes_dataset(volume_pairs(two_cases), patch=(6, 12, 24))  # larger: zero-padded
    assert big.images.shape == (2, 1, 6, 12, 24) and int(big.masks[0].sum()) == 64


def test_split_by_volume_never_shares_a_volume(two_cases: Path, write_nifti) -> None:
    for name in ("p3", "p4"):
        _case(two_cases, name, write_nifti)
    ds = slices_from_volumes(volume_pairs(two_cases), size=(8, 8))
    train, test = split_by_volume(ds, test_fraction=0.25, seed=1)
    assert set(train.volume_ids()).isdisjoint(test.volume_ids())
    assert len(set(test.volume_ids())) == 1 and len(train) + len(test) == len(ds)
    assert split_by_volume(ds, test_fraction=0.25, seed=1)[1].names == test.names
    assert set(test.meta["volumes"]) == set(test.volume_ids())
    _, named = split_by_volume(ds, test_volumes=["p2"])
    assert named.names == ("p2:003",) and named.meta["spacing"] == [ds.meta["spacing"][2]]
    with pytest.raises(DataError, match=r"unknown test volume\(s\) \['p9'\]"):
        split_by_volume(ds, test_volumes=["p9"])
    with pytest.raises(DataError, match="a split needs two or more"):
        split_by_volume(ds.select([0, 1]))


def test_subset_keeps_per_image_meta_aligned(two_cases: Path) -> None:
    ds = slices_from_volumes(volume_pairs(two_cases), size=(8, 8))
    sub = ds.subset(2)
    assert sub.meta["volume"] == ["p1", "p1"] and len(sub.meta["spacing"]) == 2
    with pytest.raises(DataError, match=r"meta\['volume'\] has 1 entries for 3 images"):
        SegDataset(ds.images, ds.masks, ds.names, "x", {"volume": ["p1"]})


def test_decathlon_layout_with_two_modalities(tmp_path: Path, write_nifti) -> None:
    shape = (10, 8, 3)
    rng = np.random.default_rng(0)
    for case in ("BRATS_001", "BRATS_002"):
        img = np.stack([rng.integers(0, 500, shape), rng.integers(0, 3000, shape)], axis=-1)
        lab = np.zeros(shape, np.uint8)
        lab[2:6, 2:6, 1] = 1
        lab[3:4, 3:4, 1] = 2
        write_nifti(tmp_path / "imagesTr" / f"{case}.nii.gz", img.astype(np.int16))
        write_nifti(tmp_path / "labelsTr" / f"{case}.nii.gz", lab)
    (tmp_path / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "modality": {"0": "FLAIR", "1": "T1w"},
                "labels": {"0": "background", "1": "edema", "2": "tumour"},
                "training": [
                    {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                    for c in ("BRATS_001", "BRATS_002")
                ],
            }
        )
    )
    pairs = volume_pairs(tmp_path)
    assert [p.name for p in pairs] == ["BRATS_001", "BRATS_002"]
    assert pairs[0].channel_names == ("FLAIR", "T1w")
    assert pairs[0].label_names == ("background", "edema", "tumour")
    assert detect_layout(tmp_path) == "decathlon" and detect_channels(tmp_path) == 2
    ds = dataset_from_path(tmp_path, size=(8, 10), channels=2, num_classes=3)
    assert ds.images.shape == (2, 2, 8, 10) and set(np.unique(ds.masks)) == {0, 1, 2}
    assert ds.meta["layout"] == "decathlon"
    with pytest.raises(
        DataError, match=r"holds labels \[0, 1, 2\]; a binary task .*--num-classes 3"
    ):
        dataset_from_path(tmp_path, channels=2)
    with pytest.raises(DataError, match="has 2 channels but the model takes 1"):
        dataset_from_path(tmp_path, num_classes=3)


def test_decathlon_ct_is_windowed_by_auto(tmp_path: Path, write_nifti) -> None:
    hu = np.full((8, 8, 2), -1000, np.int16)
    hu[2:6, 2:6, :] = 40
    hu[3:5, 3:5, 1] = 1000
    write_nifti(tmp_path / "imagesTr" / "liver_0.nii.gz", hu)
    write_nifti(tmp_path / "labelsTr" / "liver_0.nii.gz", (hu == 1000).astype(np.uint8))
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "modality": {"0": "CT"},
                "labels": {"0": "background", "1": "bone"},
                "training": [
                    {"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"}
                ],
            }
        )
    )
    ds = dataset_from_path(tmp_path, size=(8, 8))
    assert ds.meta["intensity"]["applied"] == [
        {"mode": "window", "center": 40.0, "width": 400.0, "preset": "ct-soft-tissue"}
    ]
    assert set(np.unique(ds.images).round(3)) == {0.0, 0.5, 1.0}  # air, soft tissue, bone


def test_nnunet_v2_channel_files(tmp_path: Path, write_nifti) -> None:
    for ch in range(2):
        write_nifti(
            tmp_path / "imagesTr" / f"case_{ch:04d}.nii.gz",
            (np.full((6, 6, 2), 10 * ch) + np.arange(6)[:, None, None]).astype(np.int16),
        )
    write_nifti(tmp_path / "labelsTr" / "case.nii.gz", np.ones((6, 6, 2), np.uint8))
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "prostate": 1}}
        )
    )
    (pair,) = volume_pairs(tmp_path)
    assert pair.name == "case" and [p.name for p in pair.images] == [
        "case_0000.nii.gz",
        "case_0001.nii.gz",
    ]
    assert pair.label_names == ("background", "prostate")
    assert volumes_dataset([pair], size=(2, 6, 6), channels=2).images.shape == (1, 2, 2, 6, 6)


def test_flat_pairs_and_dicom_series_folders(
    tmp_path: Path, write_nrrd, write_dicom_series, write_nifti
) -> None:
    lab = np.zeros((4, 5, 3), np.uint8)
    lab[1:3, 1:3, 1] = 1
    write_nrrd(
        tmp_path / "flat" / "tumour_image.nrrd", np.arange(60, dtype=np.int16).reshape(4, 5, 3)
    )
    write_nrrd(tmp_path / "flat" / "tumour_label.nrrd", lab)
    (pair,) = volume_pairs(tmp_path / "flat")
    assert pair.name == "tumour" and detect_layout(tmp_path / "flat") == "pairs"
    stored = np.stack([np.arange(48).reshape(8, 6) * 40 + 100 * k for k in range(3)])
    write_dicom_series(tmp_path / "dcm" / "images" / "pat1", stored, [0.0, 2.0, 4.0])
    mask = np.zeros((6, 8, 3), np.uint8)  # (x, y, z) like the DICOM volume
    mask[2:4, 2:5, 1] = 1
    write_nifti(tmp_path / "dcm" / "masks" / "pat1.nii.gz", mask)
    ds = dataset_from_path(tmp_path / "dcm", size=(8, 6))
    assert ds.names == ("pat1:001",) and ds.meta["volumes"]["pat1"]["modality"] == "CT"
    assert ds.meta["intensity"]["applied"][0]["mode"] == "window"  # DICOM says CT
    assert int(ds.masks.sum()) == 6


def test_degenerate_volume_names_the_file(two_cases: Path) -> None:
    with pytest.raises(DataError, match=r"volume .*p1\.nii\.gz .*nearly constant.*--intensity"):
        slices_from_volumes(volume_pairs(two_cases), intensity=parse_window("5000,10"))


def test_2d_images_asked_as_volumes_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / sub / "a.png")
    with pytest.raises(DataError, match=r"holds 2D images .*a 3D model needs NIfTI, NRRD or DICOM"):
        dataset_from_path(tmp_path, volume_mode="volumes")
    ds = dataset_from_path(tmp_path, size=(8, 8))
    with pytest.raises(DataError, match=r"2D images \(N, C, H, W\) but the model is a 3D model"):
        check_model_input(ds, 1, 3)


def test_3d_data_for_a_2d_model_is_refused(two_cases: Path) -> None:
    ds = dataset_from_path(two_cases, volume_mode="volumes", volume_size=(4, 8, 8))
    with pytest.raises(DataError, match=r"3D volumes .* a 2D model: load the volumes as 2D slices"):
        check_model_input(ds, 1, 2)
    check_model_input(ds, 1, 3)
    with pytest.raises(DataError, match="patches are cut from 2D images"):
        patch_classification_from_segmentation(ds)
    with pytest.raises(DataError, match="1 channel \\(grey\\) but the model takes 3"):
        check_model_input(ds, 3, 3)


def test_bundled_volumes_as_slices_and_volumes() -> None:
    root = bundled_volumes_path()
    ds = dataset_from_path(root, size=(64, 64))
    assert len(ds) == 27 and set(ds.volume_ids()) == {
        "brain1",
        "brain2",
        "breast1",
        "lung1",
        "lung2",
    }
    assert ds.masks.any(axis=(1, 2, 3)).all()
    train, test = split_by_volume(ds, test_volumes=BUNDLED_VOLUMES_TEST)
    assert (len(train), len(test)) == (21, 6)  # as the bundled 2D lesion slices
    vols = dataset_from_path(root, volume_mode="volumes")
    assert vols.images.shape == (5, 1, 32, 64, 64) and vols.ndim_spatial == 3
    assert vols.meta["volumes"]["lung1"]["spacing"] == [0.5703125, 0.5703125, 5.0]
    nrrd = pytest.importorskip("nrrd", reason="pynrrd is not installed")
    assert nrrd is not None
    from_nrrd = dataset_from_path(bundled_volumes_path("nrrd"), size=(64, 64))
    np.testing.assert_array_equal(
        from_nrrd.images, ds.images[[n.startswith("breast1") for n in ds.names]]
    )


def test_bundled_lung_ct_keeps_hounsfield_units() -> None:
    from segshield.data import read_volume

    vol = read_volume(bundled_volumes_path() / "images" / "lung1.nii.gz")
    assert vol.array.dtype == np.int16 and vol.array.min() < -900  # lung parenchyma / air in HU
    ds = slices_from_volumes(
        volume_pairs(bundled_volumes_path())[3:4], intensity=parse_window("ct-lung")
    )
    assert ds.meta["volumes"]["lung1"]["intensity"][0]["preset"] == "ct-lung"
