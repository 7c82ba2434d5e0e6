"""parity_stats: probability errors and mask flips between source and engine logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segshield.engines import parity_stats
from segshield.engines.parity import mask_agreement, probabilities


def _logits(seed: int = 0, shape=(2, 1, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, shape).astype(np.float32)


def test_identical_logits_have_zero_error_and_no_flips():
    src = _logits()
    stats = parity_stats(src, src.copy())
    assert stats["prob_max_abs_err"] == stats["prob_median_abs_err"] == 0.0
    assert stats["prob_p99_abs_err"] == stats["logit_max_abs_err"] == 0.0
    assert stats["flipped_pixels"] == 0 and stats["flip_share"] == 0.0
    assert stats["mask_dice"] == 1.0
    assert stats["n_images"] == 2 and stats["pixels"] == 2 * 8 * 8
    assert json.loads(json.dumps(stats)) == stats


def test_flips_are_counted_at_the_threshold():
    src = np.full((1, 1, 2, 2), -1.0, dtype=np.float32)  # p = 0.27: background
    eng = src.copy()
    eng[0, 0, 0, 0] = 1.0  # p = 0.73: flips to foreground
    eng[0, 0, 1, 1] = -0.5  # moves, still background
    stats = parity_stats(src, eng)
    assert stats["flipped_pixels"] == 1
    assert stats["flip_share"] == pytest.approx(0.25)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    assert stats["prob_max_abs_err"] == pytest.approx(sig(1.0) - sig(-1.0))
    assert stats["logit_max_abs_err"] == pytest.approx(2.0)
    assert stats["mask_dice"] == 0.0  # source has no foreground, engine has one pixel
    # A higher threshold keeps that pixel background: no flip.
    assert parity_stats(src, eng, threshold=0.8)["flipped_pixels"] == 0


def test_median_and_p99_are_of_probability_errors():
    src = np.zeros((1, 1, 10, 10), dtype=np.float32)
    eng = src.copy()
    eng[0, 0, 0, 0] = 40.0  # one saturated pixel: prob error 0.5
    stats = parity_stats(src, eng)
    assert stats["prob_max_abs_err"] == pytest.approx(0.5)
    assert stats["prob_median_abs_err"] == 0.0
    assert 0.0 <= stats["prob_p99_abs_err"] <= 0.5


def test_large_logits_do_not_overflow():
    src = np.array([[[[-1e4, 1e4]]]], dtype=np.float32)
    probs = probabilities(src)
    assert np.isfinite(probs).all()
    assert probs.ravel().tolist() == [0.0, 1.0]
    assert parity_stats(src, src)["prob_max_abs_err"] == 0.0


def test_multiclass_uses_softmax_and_argmax():
    src = _logits(1, (2, 3, 4, 4))
    eng = src.copy()
    eng[0, :, 0, 0] = [10.0, 0.0, 0.0] if src[0, :, 0, 0].argmax() != 0 else [0.0, 10.0, 0.0]
    stats = parity_stats(src, eng)
    assert stats["flipped_pixels"] == 1 and stats["pixels"] == 2 * 4 * 4
    assert stats["activation"] == "softmax"
    assert 0.0 < stats["mask_dice"] < 1.0  # one pixel moved between classes
    np.testing.assert_allclose(probabilities(src).sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("src", "eng", "match"),
    [
        (np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5)), "same shape"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "same shape"),
        (np.zeros((1, 1, 4, 4)), np.full((1, 1, 4, 4), np.nan), "NaN"),
    ],
)
def test_bad_inputs_are_refused(src, eng, match):
    with pytest.raises(ValueError, match=match):
        parity_stats(src, eng)


def test_threshold_must_be_a_probability():
    with pytest.raises(ValueError, match="threshold"):
        parity_stats(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), threshold=1.0)


def test_mask_agreement_golden_cases():
    # Binary/multi-label (sigmoid): Dice per channel, then the mean; empty-on-both skipped.
    src = np.zeros((1, 2, 2, 2), dtype=bool)
    eng = np.zeros_like(src)
    src[0, 0, 0, :] = True  # channel 0: 2 source pixels
    eng[0, 0, 0, 0] = True  # engine has 1 of them: Dice 2*1/(2+1)
    assert mask_agreement(src, eng, "sigmoid", 2) == pytest.approx(2 / 3)
    assert mask_agreement(np.zeros_like(src), np.zeros_like(src), "sigmoid", 2) == 1.0
    # Multi-class label maps: foreground classes 1..K-1 only (background ignored).
    a = np.array([[[0, 1], [2, 2]]])
    b = np.array([[[0, 1], [1, 2]]])
    # class 1: Dice 2*1/(1+2) = 2/3; class 2: 2*1/(2+1) = 2/3
    assert mask_agreement(a, b, "softmax", 3) == pytest.approx(2 / 3)
    # A classifier's labels (N,): the share of equal predictions.
    assert mask_agreement(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), "softmax", 3) == 0.75


def test_parity_is_scale_free_for_large_logits():
    """A ±1000-logit model with a 1e-7 relative error: the masks agree, parity says so."""
    rng = np.random.default_rng(0)
    src = rng.uniform(-1000, 1000, size=(4, 1, 8, 8)).astype(np.float32)
    eng = src * np.float32(1 + 1e-7)
    stats = parity_stats(src, eng)
    assert stats["mask_dice"] == 1.0 and stats["flipped_pixels"] == 0
    assert stats["logit_max_abs_err"] > 1e-5 and stats["logit_max_rel_err"] < 1e-6


def test_multilabel_parity_uses_sigmoid_per_channel():
    src = _logits(2, (2, 3, 4, 4))
    stats = parity_stats(src, src, activation="sigmoid")
    assert stats["activation"] == "sigmoid" and stats["pixels"] == 2 * 3 * 4 * 4
    assert stats["mask_dice"] == 1.0
