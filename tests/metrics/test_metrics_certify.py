"""Randomized-smoothing certification maths: Clopper-Pearson bounds, Holm vs Bonferroni, the
radius formula, and certified Dice with abstentions counted as errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from segshield.metrics import confusion_counts, mean_dice_of, multiclass_confusion_counts
from segshield.metrics.certify import (
    binomial_pvalue,
    certified_confusion,
    certified_scores,
    certify_pixels,
    clopper_pearson_lower,
    decisions_from_logits,
    holm_reject,
    pixel_counts,
)


def test_clopper_pearson_all_wins_is_alpha_to_the_one_over_n() -> None:
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100), rel=1e-12)
    assert clopper_pearson_lower(50, 50, 0.01) == pytest.approx(0.01 ** (1 / 50), rel=1e-12)


def test_clopper_pearson_zero_wins_is_zero() -> None:
    np.testing.assert_array_equal(clopper_pearson_lower(np.array([0, 0]), 10, 0.05), [0.0, 0.0])


@pytest.mark.parametrize(("k", "n", "alpha"), [(1, 10, 0.05), (37, 50, 0.001), (60, 100, 0.1)])
def test_clopper_pearson_solves_its_defining_equation(k: int, n: int, alpha: float) -> None:
    # The lower bound L is the p at which seeing >= k successes has probability exactly alpha.
    low = float(clopper_pearson_lower(k, n, alpha))
    assert binom.sf(k - 1, n, low) == pytest.approx(alpha, rel=1e-6)


def test_clopper_pearson_rejects_counts_out_of_range() -> None:
    with pytest.raises(ValueError):
        clopper_pearson_lower(11, 10, 0.05)
    with pytest.raises(ValueError):
        clopper_pearson_lower(5, 10, 1.5)


def test_bound_and_pvalue_are_dual() -> None:
    k = np.arange(0, 51)
    for level in (0.001, 0.05):
        for tau in (0.5, 0.7):
            bound = clopper_pearson_lower(k, 50, level)
            np.testing.assert_array_equal(bound > tau, binomial_pvalue(k, 50, tau) < level)


def test_holm_rejects_more_than_bonferroni() -> None:
    p = np.array([0.04, 0.01, 0.03, 0.02])
    np.testing.assert_array_equal(holm_reject(p, 0.1), [True, True, True, True])
    np.testing.assert_array_equal(p < 0.1 / 4, [False, True, False, True])  # Bonferroni


def test_holm_steps_down_and_stops_at_the_first_failure() -> None:
    # sorted: 0.001 < 0.05/3, 0.02 < 0.05/2 ... 0.4 >= 0.05: the last one stays
    np.testing.assert_array_equal(holm_reject(np.array([0.4, 0.001, 0.02]), 0.05), [0, 1, 1])
    # 0.03 is not < 0.06/2 (strict), so nothing is rejected even though 0.03 < 0.06
    np.testing.assert_array_equal(holm_reject(np.array([0.03, 0.03]), 0.06), [False, False])
    assert holm_reject(np.array([[0.01]]), 0.05).shape == (1, 1)


def test_decisions_and_counts() -> None:
    logits = np.array([[[[1.0, -1.0]], [[2.0, -3.0]]], [[[-1.0, 0.0]], [[0.5, 0.5]]]])  # (2,2,1,2)
    soft = decisions_from_logits(logits, "softmax")
    np.testing.assert_array_equal(soft, [[[1, 0]], [[1, 1]]])
    sig = decisions_from_logits(logits, "sigmoid")
    assert sig.shape == (2, 2, 1, 2)
    np.testing.assert_array_equal(sig[1, 0], [[0, 0]])  # logit 0 is background at 0.5
    counts = pixel_counts(soft, 2)
    np.testing.assert_array_equal(counts, [[[0, 1]], [[2, 1]]])
    with pytest.raises(ValueError):
        pixel_counts(soft, 1)


def _counts(wins: np.ndarray, n: int, cls: np.ndarray | int = 1, k: int = 2) -> np.ndarray:
    """(k, *sites) counts with `wins` votes for class `cls`, the rest for the next class."""
    wins = np.asarray(wins)
    cls = np.broadcast_to(cls, wins.shape)
    out = np.zeros((k, *wins.shape), dtype=np.int64)
    np.put_along_axis(out, cls[None], wins[None], axis=0)
    np.put_along_axis(out, ((cls + 1) % k)[None], (n - wins)[None], axis=0)
    return out


def test_bonferroni_radius_is_sigma_phi_inverse_of_the_corrected_bound() -> None:
    n, alpha, sigma = 100, 0.001, 0.25
    wins = np.array([[100, 100], [90, 50]])
    classes, radius = certify_pixels(_counts(wins, n), _counts(wins, n), n, alpha, sigma)
    p_a = clopper_pearson_lower(wins, n, alpha / 4)  # 4 pixels: Bonferroni level alpha / 4
    np.testing.assert_array_equal(classes, [[1, 1], [1, -1]])
    assert radius[0, 0] == pytest.approx(sigma * norm.ppf((alpha / 4) ** (1 / n)))
    np.testing.assert_allclose(radius[classes >= 0], sigma * norm.ppf(p_a[classes >= 0]))
    assert radius[1, 1] == 0.0


def test_candidate_comes_from_the_selection_counts() -> None:
    n = 20
    counts0 = _counts(np.array([5]), 5, cls=np.array([0]))  # selection says class 0
    counts = _counts(np.array([20]), n, cls=np.array([1]))  # but class 1 wins the estimate
    classes, radius = certify_pixels(counts0, counts, n, 0.01, 0.5)
    assert classes.tolist() == [-1] and radius.tolist() == [0.0]  # class 0 won 0 of 20


def test_holm_certifies_where_bonferroni_abstains_and_steps_radii() -> None:
    n, alpha, sigma = 20, 0.05, 1.0
    wins = np.array([20, 20, 20, 15])  # P(Bin(20, .5) >= 15) = 0.0207: > alpha/4, < alpha
    c = _counts(wins, n)
    bonf, _ = certify_pixels(c, c, n, alpha, sigma, "bonferroni")
    holm, radius = certify_pixels(c, c, n, alpha, sigma, "holm", radii=(0.0, 0.5, 1.0))
    np.testing.assert_array_equal(bonf, [1, 1, 1, -1])
    np.testing.assert_array_equal(holm, [1, 1, 1, 1])
    # tau = Phi(0.5): 0.6915^20 = 6e-4 passes Holm; tau = Phi(1): 0.8413^20 = 0.032 > 0.05/4.
    np.testing.assert_array_equal(radius, [0.5, 0.5, 0.5, 0.0])


def test_certify_pixels_checks_inputs() -> None:
    c = _counts(np.array([3]), 5)
    with pytest.raises(ValueError, match="sum to n"):
        certify_pixels(c, c, 6, 0.01, 0.5)
    with pytest.raises(ValueError, match="correction"):
        certify_pixels(c, c, 5, 0.01, 0.5, correction="sidak")


def test_abstentions_are_errors_in_certified_dice_binary_2x2() -> None:
    truth = np.array([[[[1, 0], [1, 0]]]])  # (1, 1, 2, 2)
    classes = np.array([[[[1, -1], [-1, 0]]]])
    radius = np.array([[[[0.3, 0.0], [0.0, 0.1]]]])
    c0 = certified_confusion(classes, radius, truth, 0.0, "sigmoid", 1)
    # (0,0) tp; (0,1) background abstains: fp; (1,0) foreground abstains: fn; (1,1) tn
    assert (c0.tp[0, 0], c0.fp[0, 0], c0.fn[0, 0], c0.tn[0, 0]) == (1, 1, 1, 1)
    scores = certified_scores(classes, radius, truth, (0.0, 0.2, 0.5), "sigmoid", 1)
    # r=0: 2/(2+1+1); r=0.2: the tn pixel (radius 0.1) now errs too: 2/(2+2+1); r=0.5: 0
    np.testing.assert_allclose(scores.certified_dice, [0.5, 0.4, 0.0])
    np.testing.assert_allclose(scores.certified_share, [0.5, 0.25, 0.0])
    np.testing.assert_allclose(scores.certified_any_share, [0.5, 0.25, 0.0])
    assert scores.abstain_share == 0.5
    assert scores.mean_radius == pytest.approx(0.2)


def test_abstentions_are_errors_in_certified_dice_multiclass() -> None:
    truth = np.array([[[0, 1], [2, 1]]])  # (1, 2, 2) label map
    classes = np.array([[[0, -1], [2, 1]]])
    radius = np.full(classes.shape, 0.2)
    c = certified_confusion(classes, radius, truth, 0.0, "softmax", 3)
    # the abstaining pixel (truth 1) is a fn of class 1 and a fp of classes 0 and 2
    np.testing.assert_array_equal(c.tp[0], [1, 1, 1])
    np.testing.assert_array_equal(c.fn[0], [0, 1, 0])
    np.testing.assert_array_equal(c.fp[0], [1, 0, 1])
    np.testing.assert_array_equal(c.tn[0], [2, 2, 2])
    scores = certified_scores(classes, radius, truth[:, None], (0.0,), "softmax", 3)
    assert scores.certified_dice[0] == pytest.approx(2 / 3)  # mean over classes 1 and 2


def test_multilabel_channels_are_separate_binary_problems() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (3, 2, 4, 4))
    classes = rng.integers(-1, 2, truth.shape)
    radius = np.where(classes >= 0, rng.uniform(0, 1, truth.shape), 0.0)
    both = certified_confusion(classes, radius, truth, 0.3, "sigmoid", 2)
    for ch in range(2):
        one = certified_confusion(classes[:, ch : ch + 1], radius[:, ch : ch + 1],
                                  truth[:, ch : ch + 1], 0.3, "sigmoid", 1)  # fmt: skip
        assert one == both.for_class(ch)


def test_fully_certified_prediction_scores_its_clean_dice() -> None:
    rng = np.random.default_rng(1)
    truth, pred = rng.integers(0, 2, (4, 1, 8, 8)), rng.integers(0, 2, (4, 1, 8, 8))
    scores = certified_scores(pred, np.ones(pred.shape), truth, (0.0, 1.0, 1.5), "sigmoid", 1)
    clean = mean_dice_of(confusion_counts(pred, truth).total())[0]
    np.testing.assert_allclose(scores.certified_dice[:2], clean)
    assert scores.certified_dice[2] == 0.0
    np.testing.assert_allclose(scores.certified_share[:2], np.mean(pred == truth))
    labels, guess = rng.integers(0, 3, (2, 8, 8)), rng.integers(0, 3, (2, 8, 8))
    multi = certified_scores(guess, np.ones(guess.shape), labels, (0.0,), "softmax", 3)
    want = mean_dice_of(multiclass_confusion_counts(guess, labels, 3).total(), (1, 2))[0]
    assert multi.certified_dice[0] == pytest.approx(want)


def test_scores_dict_layout_is_aligned_with_radii() -> None:
    truth = np.array([[[[1, 0], [0, 0]]], [[[0, 0], [0, 0]]]])
    classes = np.array([[[[-1, 0], [0, 0]]], [[[0, 0], [0, 0]]]])
    out = certified_scores(classes, np.full(classes.shape, 0.2), truth, [0, 0.1], "sigmoid", 1)
    d = out.to_dict()
    assert d["radii"] == [0.0, 0.1]
    for key in ("certified_dice", "certified_share", "certified_any_share", "abstain_share"):
        assert len(d[key]) == 2, key
    assert d["abstain_share"] == [0.125, 0.125]
    assert d["per_image"]["abstain_share"] == [0.25, 0.0]
    # image 2 has no foreground in truth or prediction: per-image Dice undefined, pooled 0
    assert d["per_image"]["certified_dice"][1] == [None, None]
    assert d["certified_dice"] == [0.0, 0.0]


def test_scores_check_shapes() -> None:
    with pytest.raises(ValueError, match="does not match"):
        certified_scores(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)),
                         (0.0,), "sigmoid", 1)  # fmt: skip
    with pytest.raises(ValueError, match="radii"):
        certified_scores(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)),
                         (-1.0,), "sigmoid", 1)  # fmt: skip
