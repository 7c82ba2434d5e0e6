"""Bootstrap CIs: degenerate cases by hand, coverage of the point estimate, pairing."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.metrics import (
    ConfusionCounts,
    bootstrap_attack_success_ci,
    bootstrap_ci,
    bootstrap_indices,
    dice,
    iou,
)


def _counts(tp, fp, fn, tn) -> ConfusionCounts:
    return ConfusionCounts(*(np.asarray(v, dtype=np.int64) for v in (tp, fp, fn, tn)))


def test_identical_images_give_a_zero_width_interval() -> None:
    # every image: tp=3, fp=1, fn=2 -> dice = 6/9 whatever the resample
    c = _counts([3] * 5, [1] * 5, [2] * 5, [10] * 5)
    ci = bootstrap_ci(c, dice, indices=bootstrap_indices(5, 200, seed=1))
    assert ci["low"] == pytest.approx(6 / 9) and ci["high"] == pytest.approx(6 / 9)
    assert ci["level"] == 0.95 and ci["n_boot"] == 200


def test_interval_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    tp, fp, fn = rng.integers(10, 100, (3, 30))
    c = _counts(tp, fp, fn, np.full(30, 1000))
    point = dice(tp.sum(), fp.sum(), fn.sum())
    ci = bootstrap_ci(c, dice, indices=bootstrap_indices(30, 500))
    assert ci["low"] < point < ci["high"]
    ci_iou = bootstrap_ci(c, iou, indices=bootstrap_indices(30, 500))
    assert ci_iou["high"] <= ci["high"]  # IoU <= Dice on every resample


def test_single_image_resamples_are_that_image() -> None:
    c = _counts([1], [1], [0], [2])  # dice = 2/3
    ci = bootstrap_ci(c, dice, indices=bootstrap_indices(1, 50))
    assert ci["low"] == ci["high"] == pytest.approx(2 / 3)


def test_paired_attack_success() -> None:
    clean = _counts([4, 4], [0, 0], [0, 0], [4, 4])  # dice 1
    adv = _counts([2, 2], [0, 0], [2, 2], [4, 4])  # dice 2*2/(4+2) = 2/3
    ci = bootstrap_attack_success_ci(clean, adv, indices=bootstrap_indices(2, 100))
    assert ci["low"] == pytest.approx(1 / 3) and ci["high"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="clean has 2 images but adversarial has 1"):
        bootstrap_attack_success_ci(
            clean, _counts([1], [0], [0], [1]), indices=np.zeros((1, 2), int)
        )


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_images >= 1"):
        bootstrap_indices(0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(_counts([1], [0], [0], [0]), indices=bootstrap_indices(1, 5), level=1.5)
