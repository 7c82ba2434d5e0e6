"""NumPy BCE: golden values, stability, agreement between the logit and probability forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segshield.metrics import bce_from_logits, bce_from_probs, sigmoid

pytestmark = pytest.mark.filterwarnings("error")


def test_bce_from_logits_golden() -> None:
    # image 0: logit 0 everywhere -> log 2 per pixel whatever the target
    # image 1: logits (2, -2) vs targets (1, 1) -> (log(1+e^-2) + log(1+e^2)) / 2
    logits = np.array([[0.0, 0.0], [2.0, -2.0]])
    target = np.array([[1.0, 0.0], [1.0, 1.0]])
    out = bce_from_logits(logits, target)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(math.log(2), rel=1e-15)
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2
    assert out[1] == pytest.approx(expected, rel=1e-14)


def test_bce_from_logits_is_stable_for_huge_logits() -> None:
    logits = np.array([[1000.0, -1000.0, 1000.0, -1000.0]], dtype=np.float32)
    target = np.array([[0.0, 1.0, 1.0, 0.0]])
    # two confident wrong pixels cost 1000 each, two confident right ones cost ~0
    assert bce_from_logits(logits, target)[0] == pytest.approx(500.0, rel=1e-12)


def test_bce_from_probs_golden_and_clipping() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.2], [0.0, 1.0]])
    target = np.array([[1, 0], [1, 0], [1, 0]])
    out = bce_from_probs(probs, target)
    assert out.shape == (3,)
    assert out[0] == pytest.approx(math.log(2), rel=1e-15)
    assert out[1] == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-14)
    # fully wrong and certain: clipped to -log(eps)
    assert out[2] == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert bce_from_probs(probs, target, eps=1e-3)[2] == pytest.approx(-math.log(1e-3), rel=1e-6)


def test_probs_and_logits_agree_on_nchw() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4, 1, 8, 8))
    target = (rng.random((4, 1, 8, 8)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        bce_from_probs(sigmoid(logits), target), bce_from_logits(logits, target), rtol=1e-9
    )


def test_sigmoid_no_overflow() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        bce_from_logits(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(1, 2\).*\(2, 2\)"):
        bce_from_probs(np.zeros((1, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce_from_logits(np.zeros((1, 2)), np.array([[0, 255]]))
    with pytest.raises(ValueError, match="eps"):
        bce_from_probs(np.zeros((1, 2)), np.zeros((1, 2)), eps=0.0)
