"""Bootstrap CIs: degenerate cases by hand, coverage of the point estimate, pairing; counts of
any class count (binary C = 1, multi-class, classification)."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.metrics import (
    Accumulator,
    Activation,
    ConfusionCounts,
    SegmentationAccumulator,
    accuracy_of,
    bootstrap_attack_success_ci,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_stat,
    dice,
    iou,
    mean_dice_of,
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


def _softmax_counts(seed: int = 0, n: int = 25) -> tuple[Accumulator, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 3, size=(n, 8, 8))
    # logits that favour the right class, so the scores are far from 0 and 1
    logits = rng.normal(0, 1, size=(n, 3, 8, 8)) + 1.5 * np.moveaxis(np.eye(3)[target], -1, 1)
    acc = Accumulator(Activation.SOFTMAX, 3)
    acc.update(logits.astype(np.float32), target)
    return acc, logits, target


def test_multiclass_interval_brackets_the_point_estimate() -> None:
    acc, _, _ = _softmax_counts()
    m, counts = acc.result(), acc.counts()
    assert counts.num_classes == 3 and acc.foreground == (1, 2)
    idx = bootstrap_indices(len(counts), 500, seed=3)
    ci = bootstrap_ci(counts, dice, indices=idx, foreground=acc.foreground)
    assert ci["low"] < m.dice < ci["high"]
    ci_iou = bootstrap_ci(counts, iou, indices=idx, foreground=acc.foreground)
    assert ci_iou["low"] < m.iou < ci_iou["high"]
    assert ci_iou["high"] <= ci["high"]  # IoU <= Dice on every resample
    # the point estimate is the same aggregation of the full set
    assert mean_dice_of(counts.total(), acc.foreground)[0] == m.dice
    # the default foreground is every class, which here includes the background
    every = bootstrap_ci(counts, dice, indices=idx)
    assert every == bootstrap_ci(counts, dice, indices=idx, foreground=(0, 1, 2))
    assert every != ci
    # a generic statistic: accuracy, bracketing the point estimate too
    acc_ci = bootstrap_stat(
        counts, lambda c: accuracy_of(c, Activation.SOFTMAX), indices=idx, level=0.9
    )
    assert acc_ci["low"] < m.accuracy < acc_ci["high"]
    assert acc_ci["level"] == 0.9 and acc_ci["n_boot"] == 500


def test_one_class_counts_give_the_binary_interval() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, size=(20, 1, 6, 6)).astype(np.float32)
    target = (rng.random((20, 1, 6, 6)) < 0.4).astype(np.uint8)
    binary = SegmentationAccumulator()
    binary.update(x, target)
    c1 = binary.counts()
    assert c1.num_classes == 1
    idx = bootstrap_indices(20, 300, seed=5)
    ci = bootstrap_ci(c1, dice, indices=idx)
    # the binary interval by hand: Dice of each resample's summed counts
    tp, fp, fn = (getattr(c1, k)[:, 0][idx].sum(axis=1) for k in ("tp", "fp", "fn"))
    low, high = np.quantile(dice(tp, fp, fn), [0.025, 0.975])
    assert (ci["low"], ci["high"]) == (float(low), float(high))
    assert ci["low"] < binary.result().dice < ci["high"]
    # the same pixels as a 2-class softmax ([0, x] logits): class 1 is the binary channel, so
    # its interval over foreground (1,) is the binary one, to the bit
    two = Accumulator(Activation.SOFTMAX, 2)
    two.update(np.concatenate([np.zeros_like(x), x], axis=1), target)
    assert two.counts().for_class(1) == c1
    assert bootstrap_ci(two.counts(), dice, indices=idx, foreground=two.foreground) == ci
    assert bootstrap_ci(two.counts().for_class(1), dice, indices=idx) == ci
    # and the attack-success interval of one-class counts matches the 2-class one
    adv = ConfusionCounts(tp=c1.tp // 2, fp=c1.fp, fn=c1.fn + c1.tp - c1.tp // 2, tn=c1.tn)
    as_1 = bootstrap_attack_success_ci(c1, adv, indices=idx)
    adv2 = ConfusionCounts(
        *(
            np.concatenate([getattr(two.counts().for_class(0), k), getattr(adv, k)], axis=1)
            for k in ("tp", "fp", "fn", "tn")
        )
    )
    assert bootstrap_attack_success_ci(two.counts(), adv2, indices=idx, foreground=(1,)) == as_1


def test_attack_success_with_a_statistic() -> None:
    # a classifier: accuracy 4/4 clean, 2/4 adversarial -> AS = 1/2 on any resample of
    # identical images
    clean = ConfusionCounts(tp=[[1, 0]] * 4, fp=[[0, 0]] * 4, fn=[[0, 0]] * 4, tn=[[0, 1]] * 4)
    adv = ConfusionCounts(
        tp=[[1, 0], [0, 0], [1, 0], [0, 0]],
        fp=[[0, 0], [0, 1], [0, 0], [0, 1]],
        fn=[[0, 0], [1, 0], [0, 0], [1, 0]],
        tn=[[0, 1], [0, 0], [0, 1], [0, 0]],
    )

    def accuracy(c: ConfusionCounts) -> np.ndarray:
        return accuracy_of(c, Activation.SOFTMAX)

    idx = np.array([[0, 1, 2, 3], [1, 3, 0, 2]])
    ci = bootstrap_attack_success_ci(clean, adv, indices=idx, stat=accuracy)
    assert ci["low"] == ci["high"] == 0.5
    with pytest.raises(ValueError, match="level"):
        bootstrap_attack_success_ci(clean, adv, indices=idx, level=0.0)
