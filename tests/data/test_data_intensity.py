"""Intensity scaling: CT windows, percentiles, dtype ranges, the `auto` rule, and the refusal
of scalings that leave an image degenerate (golden values computed by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.data import (
    WINDOW_PRESETS,
    Intensity,
    IntensityMode,
    check_intensities,
    intensity_from_options,
    parse_window,
    resolve_intensity,
    scale_intensity,
)
from segshield.errors import DataError


def test_window_golden_values() -> None:
    # window 40,400 HU: [-160, 240] -> [0, 1]
    hu = np.array([-1000, -160, -60, 40, 140, 240, 1000], dtype=np.int16)
    out = scale_intensity(hu, parse_window("40,400"))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-7)


def test_lung_preset() -> None:
    spec = parse_window("ct-lung")
    assert (spec.center, spec.width, spec.preset) == (-600.0, 1500.0, "ct-lung")
    # [-1350, 150]: -600 HU (centre) -> 0.5, -975 -> 0.25
    np.testing.assert_allclose(scale_intensity(np.array([-600.0, -975.0]), spec), [0.5, 0.25])
    assert spec.describe() == {
        "mode": "window",
        "center": -600.0,
        "width": 1500.0,
        "preset": "ct-lung",
    }
    assert WINDOW_PRESETS["ct-soft-tissue"] == (40.0, 400.0)


@pytest.mark.parametrize("text", ["40", "40,400,1", "a,b", "ct-nope"])
def test_bad_window_names_the_format(text: str) -> None:
    with pytest.raises(DataError, match=r"--window must be CENTER,WIDTH .*ct-soft-tissue"):
        parse_window(text)


def test_window_width_must_be_positive() -> None:
    with pytest.raises(DataError, match="window width must be > 0"):
        parse_window("40,0")


def test_percentile_scaling_golden() -> None:
    x = np.arange(1001, dtype=np.float64)  # 0.5th percentile 5, 99.5th 995
    out = scale_intensity(x, Intensity(IntensityMode.PERCENTILE))
    np.testing.assert_allclose(out[[0, 5, 500, 995, 1000]], [0, 0, 0.5, 1, 1], atol=1e-6)
    out2 = scale_intensity(x, Intensity(IntensityMode.PERCENTILE, low=10, high=90))
    np.testing.assert_allclose(out2[[100, 500, 900]], [0, 0.5, 1], atol=1e-6)


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([0, 51, 255], dtype=np.uint8), [0, 0.2, 1]),
        (np.array([0, 13107, 65535], dtype=np.uint16), [0, 0.2, 1]),
        (np.array([-32768, 32767], dtype=np.int16), [0, 1]),
    ],
)
def test_dtype_range(arr: np.ndarray, expected: list) -> None:
    np.testing.assert_allclose(scale_intensity(arr, Intensity("dtype")), expected, atol=1e-6)


def test_minmax_and_none() -> None:
    np.testing.assert_allclose(
        scale_intensity(np.array([10, 20, 30]), Intensity("minmax")), [0, 0.5, 1]
    )
    np.testing.assert_allclose(
        scale_intensity(np.array([-0.1, 0.3, 1.2]), Intensity("none")), [0, 0.3, 1]
    )


@pytest.mark.parametrize(
    ("arr", "modality", "mode"),
    [
        (np.zeros(4, np.uint8), None, "dtype"),
        (np.zeros(4, bool), None, "dtype"),
        (np.zeros(4, np.uint16), None, "percentile"),
        (np.zeros(4, np.int16), "MR", "percentile"),
        (np.zeros(4, np.int16), "CT", "window"),
        (np.array([0.0, 0.5, 1.0]), None, "none"),
        (np.array([0.0, 5.0]), None, "percentile"),
    ],
)
def test_auto_rule(arr: np.ndarray, modality: str | None, mode: str) -> None:
    spec = resolve_intensity(Intensity(), arr, modality)
    assert spec.mode == mode
    if mode == "window":
        assert (spec.center, spec.width, spec.preset) == (40.0, 400.0, "ct-soft-tissue")


def test_explicit_modes_are_kept() -> None:
    spec = Intensity("minmax")
    assert resolve_intensity(spec, np.zeros(3, np.uint8), "CT") is spec


def test_spec_validation() -> None:
    with pytest.raises(DataError, match="unknown intensity mode 'gamma'"):
        Intensity("gamma")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="needs a center and a width"):
        Intensity("window")
    with pytest.raises(DataError, match="0 <= low < high <= 100"):
        Intensity("percentile", low=99, high=1)


def test_intensity_from_options() -> None:
    assert intensity_from_options() == Intensity()
    assert intensity_from_options(window="-600,1500").center == -600.0
    assert intensity_from_options("percentile", percentiles="1,99").describe() == {
        "mode": "percentile",
        "low": 1.0,
        "high": 99.0,
    }
    with pytest.raises(DataError, match="conflicts with 'minmax'"):
        intensity_from_options("minmax", window="40,400")
    with pytest.raises(DataError, match="needs --window"):
        intensity_from_options("window")
    with pytest.raises(DataError, match="--percentiles must be LOW,HIGH"):
        intensity_from_options(percentiles="1")


def _ct_like(rng: np.random.Generator) -> np.ndarray:
    """12-bit stored values of a CT slice (air ~ 24, soft tissue ~ 1064, bone ~ 2000)."""
    img = np.full((64, 64), 24, dtype=np.uint16)
    img[8:56, 8:56] = 1064
    img[20:30, 20:30] = 2000
    return img + rng.integers(0, 40, img.shape, dtype=np.uint16)


def test_12bit_in_16bit_divided_by_65535_is_refused() -> None:
    raw = _ct_like(np.random.default_rng(0))
    spec = Intensity("dtype")
    with pytest.raises(DataError) as err:
        check_intensities(scale_intensity(raw, spec), raw, "image scan.png", spec)
    msg = str(err.value)
    assert "image scan.png (uint16, raw range 24..2039" in msg
    assert "uses only 3.1% of [0, 1]" in msg and "--intensity percentile" in msg
    # the auto rule (percentile) gives a usable image
    auto = resolve_intensity(Intensity(), raw)
    scaled = scale_intensity(raw, auto)
    check_intensities(scaled, raw, "image scan.png", auto)
    assert scaled.max() == 1.0 and scaled.mean() > 0.3


def test_a_window_far_from_the_data_is_refused() -> None:
    mr = np.random.default_rng(1).integers(0, 300, (16, 16, 4)).astype(np.int16)
    spec = parse_window("2000,100")
    with pytest.raises(
        DataError,
        match=r"volume brain\.nii\.gz .*nearly constant.*--intensity "
        r"percentile",
    ):
        check_intensities(scale_intensity(mr, spec), mr, "volume brain.nii.gz", spec)


def test_percentile_of_a_sparse_image_suggests_minmax() -> None:
    raw = np.zeros((100, 100), dtype=np.uint16)
    raw[0, :20] = 4000  # 0.2% of the pixels: both percentiles are 0
    spec = Intensity("percentile")
    with pytest.raises(DataError, match=r"nearly constant.*--intensity minmax"):
        check_intensities(scale_intensity(raw, spec), raw, "image a.tif", spec)
    ok = Intensity("minmax")
    check_intensities(scale_intensity(raw, ok), raw, "image a.tif", ok)


def test_none_with_values_mostly_outside_01_is_refused() -> None:
    raw = np.linspace(-5, 5, 100)
    with pytest.raises(DataError, match=r"90% of the values lie outside \[0, 1\]"):
        check_intensities(scale_intensity(raw, Intensity("none")), raw, "x", Intensity("none"))


def test_non_finite_values_are_refused() -> None:
    raw = np.array([0.0, np.nan, 2.0])
    spec = Intensity("percentile")
    with pytest.raises(DataError, match=r"x .*holds NaN or Inf"):
        check_intensities(scale_intensity(raw, spec), raw, "x", spec)


def test_constant_files_and_8bit_dtype_are_accepted() -> None:
    const = np.full((8, 8), 700, dtype=np.uint16)  # what the file holds, not a scaling mistake
    check_intensities(scale_intensity(const, Intensity("percentile")), const, "c", Intensity())
    dark = np.zeros((8, 8), dtype=np.uint8)
    dark[0, 0] = 3
    check_intensities(scale_intensity(dark, Intensity("dtype")), dark, "d", Intensity("dtype"))
