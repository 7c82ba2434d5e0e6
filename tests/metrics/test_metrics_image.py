"""Perturbation norms and SSIM."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from segshield.metrics import perturbation_norms, ssim

pytestmark = pytest.mark.filterwarnings("error")


def test_perturbation_norms_golden() -> None:
    clean = np.zeros((2, 1, 2, 2), dtype=np.float32)
    adv = clean.copy()
    adv[0, 0] = [[3.0, 4.0], [0.0, 0.0]]  # l2 = sqrt(9 + 16) = 5, linf = 4
    adv[1, 0] = [[-0.5, 0.0], [0.0, 0.25]]  # l2 = sqrt(0.25 + 0.0625), linf = 0.5
    l2, linf = perturbation_norms(clean, adv)
    assert l2.shape == linf.shape == (2,)
    np.testing.assert_allclose(l2, [5.0, math.sqrt(0.3125)], rtol=1e-15)
    np.testing.assert_array_equal(linf, [4.0, 0.5])


def test_perturbation_norms_flatten_channels() -> None:
    clean = np.zeros((1, 3, 2, 2))
    adv = clean + 0.5  # 12 values of 0.5 -> l2 = 0.5 * sqrt(12)
    l2, linf = perturbation_norms(clean, adv)
    np.testing.assert_allclose(l2, [0.5 * math.sqrt(12)], rtol=1e-15)
    np.testing.assert_array_equal(linf, [0.5])


def test_shape_mismatch_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\).*\(1, 1, 8, 9\)"):
        perturbation_norms(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 9)))
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\).*\(1, 1, 8, 9\)"):
        ssim(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 9)))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_ssim_identical_is_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 32, 32))
    np.testing.assert_allclose(ssim(x, x.copy()), 1.0, rtol=0, atol=1e-12)
    rgb = rng.random((2, 3, 16, 16))
    np.testing.assert_allclose(ssim(rgb, rgb), 1.0, rtol=0, atol=1e-12)


def test_ssim_constant_images_golden() -> None:
    # Constant images: means 0.5 and 0.6, variances and covariance 0, so
    # SSIM = (2*0.5*0.6 + C1) / (0.5^2 + 0.6^2 + C1) with C1 = (0.01 * 1.0)^2.
    clean = np.full((1, 1, 16, 16), 0.5)
    adv = np.full((1, 1, 16, 16), 0.6)
    c1 = 0.01**2
    assert ssim(clean, adv)[0] == pytest.approx((0.6 + c1) / (0.61 + c1), rel=1e-9)


def test_ssim_decreases_with_noise() -> None:
    rng = np.random.default_rng(1)
    clean = np.clip(rng.normal(0.5, 0.1, size=(1, 1, 48, 48)), 0, 1)
    noise = rng.normal(size=clean.shape)
    scores = [ssim(clean, clean + s * noise)[0] for s in (0.0, 0.01, 0.05, 0.2)]
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(scores))


def test_ssim_matches_wang_settings_in_skimage() -> None:
    rng = np.random.default_rng(2)
    clean = rng.random((2, 1, 20, 24)).astype(np.float32)
    adv = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    out = ssim(clean, adv)
    for i in range(2):
        expected = structural_similarity(
            clean[i, 0].astype(np.float64),
            adv[i, 0].astype(np.float64),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert out[i] == pytest.approx(expected, rel=1e-12)


def test_ssim_data_range_matters() -> None:
    rng = np.random.default_rng(3)
    clean = rng.random((1, 1, 16, 16)) * 255
    adv = clean + rng.normal(0, 5, clean.shape)
    assert ssim(clean, adv, data_range=255.0)[0] < ssim(clean, adv, data_range=1e6)[0]
    with pytest.raises(ValueError, match="data_range"):
        ssim(clean, adv, data_range=0.0)


def test_ssim_small_images() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((1, 1, 8, 9))
    # 8 px: window shrinks to 7 instead of failing.
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-12)
    assert ssim(x, np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1))[0] < 1.0
    with pytest.raises(ValueError, match=r"at least 7x7 px, got shape \(1, 1, 6, 9\)"):
        ssim(np.zeros((1, 1, 6, 9)), np.zeros((1, 1, 6, 9)))
