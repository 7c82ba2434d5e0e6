"""Attack success and prediction disagreement: golden values and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segshield.metrics import attack_success, disagreement, label_disagreement

pytestmark = pytest.mark.filterwarnings("error")


def test_attack_success_golden() -> None:
    assert attack_success(0.8, 0.2) == pytest.approx(0.75, rel=1e-15)  # (0.8-0.2)/0.8
    assert attack_success(0.5, 0.0) == 1.0  # total success
    assert attack_success(0.5, 0.5) == 0.0  # no effect
    assert attack_success(0.5, 0.6) == pytest.approx(-0.2, rel=1e-12)  # attack helped
    assert isinstance(attack_success(0.8, 0.2), float)


def test_attack_success_zero_clean_is_nan() -> None:
    assert math.isnan(attack_success(0.0, 0.0))
    assert math.isnan(attack_success(0.0, 0.3))
    out = attack_success(np.array([0.9, 0.0, 0.6, np.nan]), np.array([0.45, 0.1, 0.6, 0.2]))
    assert out.shape == (4,)
    assert out[0] == 0.5
    assert math.isnan(out[1])
    assert out[2] == 0.0
    assert math.isnan(out[3])


def test_attack_success_shape_error() -> None:
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        attack_success(np.ones(2), np.ones(3))


def test_disagreement_golden() -> None:
    a = np.zeros((2, 1, 2, 4), dtype=bool)
    b = np.zeros((2, 1, 2, 4), dtype=bool)
    # image 0: 2 of 8 pixels differ; image 1: identical
    a[0, 0, 0, 0] = True
    b[0, 0, 1, 3] = True
    a[1, 0, 1, 1] = b[1, 0, 1, 1] = True
    out = disagreement(a, b)
    assert out.shape == (2,)
    np.testing.assert_array_equal(out, [2 / 8, 0.0])
    np.testing.assert_array_equal(disagreement(a.astype(np.uint8), b.astype(np.uint8)), out)
    np.testing.assert_array_equal(disagreement(a, ~a), [1.0, 1.0])


def test_disagreement_errors_name_shapes() -> None:
    a = np.zeros((2, 1, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 1, 4, 5\)"):
        disagreement(a, np.zeros((2, 1, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"pred_b of shape \(2, 1, 4, 4\) must be binary"):
        disagreement(a, np.full((2, 1, 4, 4), 2))


def test_fooled_shares_golden() -> None:
    from segshield.metrics import fooled_shares

    # per-image AS on the source: 0.5, 0.0, 0.3, nan(clean 0); on the engine: 0.1, 0.4, 0.3, 0.9
    src_clean, src_adv = [1.0, 0.8, 1.0, 0.0], [0.5, 0.8, 0.7, 0.0]
    eng_clean, eng_adv = [1.0, 1.0, 1.0, 1.0], [0.9, 0.6, 0.7, 0.1]
    only_src, only_eng = fooled_shares(src_clean, src_adv, eng_clean, eng_adv, threshold=0.2)
    # image 0: source only; image 1: engine only; image 2: both; image 3: engine only (source
    # undefined counts as not fooled)
    assert only_src == 0.25 and only_eng == 0.5


def test_label_disagreement_golden() -> None:
    # label maps (N,H,W) and the softmax accumulator's (N,1,H,W) label maps agree
    a = np.array([[[0, 1], [2, 2]], [[1, 1], [1, 1]]], dtype=np.uint8)
    b = np.array([[[0, 2], [2, 0]], [[1, 1], [1, 1]]], dtype=np.uint8)
    assert label_disagreement(a, b).tolist() == [2 / 4, 0.0]
    assert label_disagreement(a[:, None], b[:, None]).tolist() == [2 / 4, 0.0]


def test_label_disagreement_errors() -> None:
    a = np.zeros((2, 4, 4), int)
    with pytest.raises(ValueError, match=r"pred_a \(2, 4, 4\) vs pred_b \(2, 4, 3\)"):
        label_disagreement(a, a[:, :, :3])
    # Changed on purpose: 2-D input is now a classifier's (N, C) predictions (e.g. the softmax
    # accumulator's (N, 1) labels), so only input without a batch and channel axis is refused.
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        label_disagreement(a[0, 0], a[0, 0])
    labels = np.array([[0], [2], [1]])
    assert label_disagreement(labels, np.array([[0], [1], [1]])).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="dtype float64"):
        label_disagreement(a.astype(float), a.astype(float))
    assert np.isnan(label_disagreement(np.zeros((2, 0, 4), int), np.zeros((2, 0, 4), int))).all()
