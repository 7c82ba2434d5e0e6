"""Loaders: bundled real data, the images/+masks/ and BUSI layouts, and every bad-input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from segshield.data import (
    Intensity,
    bundled_dataset,
    check_channels,
    dataset_from_busi,
    dataset_from_folder,
    dataset_from_path,
    detect_channels,
)
from segshield.errors import DataError


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _pair(root: Path, stem: str, h: int = 20, w: int = 30, mask_h: int | None = None) -> None:
    rng = np.random.default_rng(abs(hash(stem)) % 2**32)
    _png(root / "images" / f"{stem}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
    m = np.zeros((mask_h or h, w), dtype=np.uint8)
    m[2:8, 3:12] = 255
    _png(root / "masks" / f"{stem}.png", m)


@pytest.mark.parametrize(
    ("name", "split", "n"), [("nuclei", "train", 12), ("nuclei", "test", 4), ("lesions", "test", 6)]
)
def test_bundled_real_data(name: str, split: str, n: int) -> None:
    ds = bundled_dataset(name, split)
    assert ds.images.shape == (n, 1, 128, 128)
    assert ds.masks.shape == (n, 1, 128, 128)
    assert ds.images.dtype == np.float32 and ds.masks.dtype == np.uint8
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    assert set(np.unique(ds.masks)) <= {0, 1}
    assert ds.masks.any(axis=(1, 2, 3)).all(), "every bundled image has foreground"
    assert len(ds.sha256()) == 64


def test_bundled_splits_do_not_overlap() -> None:
    train, test = bundled_dataset("lesions", "train"), bundled_dataset("lesions", "test")
    patients = lambda ds: {n.split("_")[0] for n in ds.names}  # noqa: E731
    assert patients(train).isdisjoint(patients(test)), "lesion split must be by patient"
    nt, ne = bundled_dataset("nuclei", "train"), bundled_dataset("nuclei", "test")
    assert set(nt.names).isdisjoint(ne.names)


def test_folder_layout_resizes_and_scales(tmp_path: Path) -> None:
    for stem in ("b", "a"):
        _pair(tmp_path, stem)
    ds = dataset_from_folder(tmp_path, size=(16, 16))
    assert ds.names == ("a", "b")
    assert ds.images.shape == (2, 1, 16, 16) and ds.masks.shape == (2, 1, 16, 16)
    assert ds.images.max() <= 1.0 and ds.masks.max() == 1
    assert dataset_from_path(tmp_path, size=(16, 16)).sha256() == ds.sha256()


def test_sha256_changes_with_content(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    h1 = dataset_from_folder(tmp_path, size=(16, 16)).sha256()
    _pair(tmp_path, "c")
    assert dataset_from_folder(tmp_path, size=(16, 16)).sha256() != h1


def test_busi_layout_merges_masks(tmp_path: Path) -> None:
    img = np.full((40, 40), 128, dtype=np.uint8)
    _png(tmp_path / "benign" / "benign (1).png", img)
    m0 = np.zeros((40, 40), dtype=np.uint8)
    m0[0:10, 0:10] = 255
    m1 = np.zeros((40, 40), dtype=np.uint8)
    m1[30:40, 30:40] = 255
    _png(tmp_path / "benign" / "benign (1)_mask.png", m0)
    _png(tmp_path / "benign" / "benign (1)_mask_1.png", m1)
    _png(tmp_path / "normal" / "normal (1).png", img)
    _png(tmp_path / "normal" / "normal (1)_mask.png", np.zeros((40, 40), dtype=np.uint8))
    ds = dataset_from_busi(tmp_path, size=(40, 40))
    assert ds.names == ("benign/benign (1)", "normal/normal (1)")
    # both lesion masks are merged: 2 x 100 foreground pixels
    assert int(ds.masks[0].sum()) == 200
    assert int(ds.masks[1].sum()) == 0
    assert np.allclose(ds.images[0], 128 / 255)
    assert dataset_from_path(tmp_path, size=(40, 40)).names == ds.names


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    (tmp_path / "images" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*a\.png"):
        dataset_from_folder(tmp_path)


def test_image_without_mask(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    _png(tmp_path / "images" / "lonely.png", np.zeros((20, 30), dtype=np.uint8))
    with pytest.raises(DataError, match=r"lonely\.png has no mask"):
        dataset_from_folder(tmp_path)


def test_busi_image_without_mask(tmp_path: Path) -> None:
    _png(tmp_path / "benign (2).png", np.zeros((20, 20), dtype=np.uint8))
    with pytest.raises(DataError, match=r"benign \(2\)\.png has no mask"):
        dataset_from_busi(tmp_path)


def test_mask_of_wrong_size(tmp_path: Path) -> None:
    _pair(tmp_path, "a", h=20, w=30, mask_h=21)
    with pytest.raises(DataError, match=r"mask .*a\.png is 30x21 .* image .*a\.png is 30x20"):
        dataset_from_folder(tmp_path)


def test_non_binary_mask(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    soft = np.zeros((20, 30), dtype=np.uint8)
    soft[0, 0], soft[0, 1] = 128, 255
    _png(tmp_path / "masks" / "a.png", soft)
    with pytest.raises(DataError, match=r"a\.png is not binary: it holds 3 values"):
        dataset_from_folder(tmp_path)


def test_mask_values_0_1_are_accepted(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    m = np.zeros((20, 30), dtype=np.uint8)
    m[:5, :5] = 1
    _png(tmp_path / "masks" / "a.png", m)
    assert int(dataset_from_folder(tmp_path, size=(20, 30)).masks.sum()) == 25


@pytest.mark.parametrize("layout", ["empty", "no_masks_dir", "missing"])
def test_empty_or_missing_folder(tmp_path: Path, layout: str) -> None:
    if layout == "empty":
        (tmp_path / "images").mkdir()
        (tmp_path / "masks").mkdir()
        match = "no images in"
    elif layout == "no_masks_dir":
        (tmp_path / "images").mkdir()
        match = "masks is missing"
    else:
        tmp_path = tmp_path / "nope"
        match = "does not exist"
    with pytest.raises(DataError, match=match):
        dataset_from_folder(tmp_path) if layout != "missing" else dataset_from_path(tmp_path)


def test_unknown_bundled_dataset() -> None:
    with pytest.raises(DataError, match="unknown bundled dataset 'busi'"):
        bundled_dataset("busi")


def test_rgb_images_become_gray_or_stay_rgb(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", np.full((8, 8, 3), 255, dtype=np.uint8))
    _png(tmp_path / "masks" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    assert dataset_from_folder(tmp_path, size=(8, 8)).images.shape == (1, 1, 8, 8)
    assert dataset_from_folder(tmp_path, size=(8, 8), channels=3).images.shape == (1, 3, 8, 8)


def test_decompression_bomb_is_a_data_error(tmp_path: Path, monkeypatch) -> None:
    _pair(tmp_path, "big", h=64, w=64)
    # PIL refuses images above 2 x MAX_IMAGE_PIXELS (a decompression bomb); shrink the limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"refusing to read image .*big\.png.*MAX_IMAGE_PIXELS"):
        dataset_from_folder(tmp_path)


def test_an_image_between_one_and_two_pixel_limits_is_refused_too(
    tmp_path: Path, monkeypatch
) -> None:
    # PIL only warns (DecompressionBombWarning) between 1x and 2x its limit, then decodes.
    _pair(tmp_path, "big", h=64, w=64)  # 4096 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.raises(DataError, match=r"refusing to read image .*big\.png"):
        dataset_from_folder(tmp_path)


def test_an_image_that_breaks_the_decoder_is_a_data_error(tmp_path: Path, monkeypatch) -> None:
    _pair(tmp_path, "a")

    def broken(*args, **kwargs):
        raise IndexError("tile out of range")  # what a truncated TIFF can do inside PIL

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    with pytest.raises(DataError, match=r"cannot read image .*a\.png: IndexError"):
        dataset_from_folder(tmp_path)


def _ct_slice_uint16() -> np.ndarray:
    """A 12-bit CT slice stored in uint16: pydicom's CT_small.dcm where installed, else a
    synthetic one (air ~ 24, soft tissue ~ 1064, bone ~ 2000 stored values)."""
    try:
        import pydicom
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
        if path is not None:
            return pydicom.dcmread(path).pixel_array.astype(np.uint16)
    except ImportError:
        pass
    img = np.full((64, 64), 24, dtype=np.uint16)
    img[8:56, 8:56] = 1064
    img[20:30, 20:30] = 2000
    return img + np.random.default_rng(0).integers(0, 40, img.shape, dtype=np.uint16)


def test_16bit_ct_png_is_scaled_not_black(tmp_path: Path) -> None:
    ct = _ct_slice_uint16()
    assert ct.dtype == np.uint16 and ct.max() < 4096  # 12-bit data in a 16-bit file
    _png(tmp_path / "images" / "ct.png", ct)
    m = np.zeros(ct.shape, dtype=np.uint8)
    m[10:20, 10:20] = 255
    _png(tmp_path / "masks" / "ct.png", m)
    ds = dataset_from_folder(tmp_path, size=ct.shape)
    # divided by 65535 the slice would lie in [0, 0.04]: percentile scaling uses [0, 1]
    assert ds.images.max() == pytest.approx(1.0) and ds.images.mean() > 0.2
    assert ds.meta["intensity"] == {
        "mode": "auto",
        "applied": [{"mode": "percentile", "low": 0.5, "high": 99.5}],
    }
    with pytest.raises(DataError, match=r"image .*ct\.png \(uint16.*uses only .*--intensity perc"):
        dataset_from_folder(tmp_path, size=(32, 32), intensity=Intensity("dtype"))


def test_8bit_images_keep_the_dtype_range(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    ds = dataset_from_folder(tmp_path, size=(20, 30))
    raw = np.asarray(Image.open(tmp_path / "images" / "a.png"))
    np.testing.assert_allclose(ds.images[0, 0], raw / 255.0, atol=1e-6)
    assert ds.meta["intensity"]["applied"] == [{"mode": "dtype"}]


def _rgb(root: Path) -> np.ndarray:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, np.arange(8)[None, :] * 30
    _png(root / "images" / "a.png", rgb)
    _png(root / "masks" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    return rgb


def test_rgb_is_kept_for_3_channels_and_converting_it_warns(tmp_path: Path, caplog) -> None:
    rgb = _rgb(tmp_path)
    ds = dataset_from_folder(tmp_path, size=(8, 8), channels=3)
    np.testing.assert_allclose(ds.images[0], rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    with caplog.at_level("WARNING", logger="segshield.data.loaders"):
        grey = dataset_from_folder(tmp_path, size=(8, 8), channels=1)
    assert grey.images.shape == (1, 1, 8, 8)
    assert "1 RGB image(s) converted to grey for a 1-channel model" in caplog.text


def test_detect_channels_and_the_mismatch_message(tmp_path: Path) -> None:
    _rgb(tmp_path / "colour")
    assert detect_channels(tmp_path / "colour") == 3
    # grey stored as RGB (BUSI's PNGs) is grey: converting it loses nothing, and no warning
    _png(tmp_path / "grey" / "images" / "a.png", np.full((8, 8, 3), 90, dtype=np.uint8))
    _png(tmp_path / "grey" / "masks" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    assert detect_channels(tmp_path / "grey") == 1
    _pair(tmp_path / "plain", "a")
    assert detect_channels(tmp_path / "plain") == 1
    with pytest.raises(
        DataError,
        match=r"^the data has 3 channels \(RGB\) but the model takes 1: pass --channels 1 to "
        r"convert to grey or use a 3-channel model$",
    ):
        check_channels(3, 1)
    check_channels(3, 3)
