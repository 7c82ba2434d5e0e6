"""Certified segmentation by randomized smoothing (SegCertify, Fischer et al., ICML 2021).

The smoothed segmenter predicts, at every decision site, the class the base model outputs most
often under Gaussian input noise N(0, sigma^2 I). A *decision site* is a pixel (softmax: one
label per pixel, sites (H, W)) or a channel-pixel (sigmoid: every channel is its own binary
{0, 1} problem, sites (C, H, W); binary segmentation is C = 1). Per image and site:

1. the candidate class c_hat is the majority of ``n0`` noisy predictions;
2. ``k`` = how often c_hat wins among ``n`` further, independent noisy predictions;
3. p_A = the one-sided Clopper-Pearson lower confidence bound of P(f(x + noise) = c_hat);
4. the site is certified iff p_A > 1/2, with L2 radius R = sigma * Phi^-1(p_A) (Cohen et al.,
   2019, Theorem 1); otherwise it abstains (class -1).

Multiple testing over the m sites of one image (m = H*W, or C*H*W for sigmoid):

* ``"bonferroni"``: every bound is taken at level alpha / m, so with probability >= 1 - alpha
  over the noise *all* certified sites of the image hold their class within their own radius
  simultaneously (union bound). This is the one correction that yields per-site radii.
* ``"holm"``: the paper's Holm-Bonferroni step-down test of H_i: p_i <= tau, run at
  tau = Phi(r / sigma) for every requested radius r (tau = 1/2 for the certify/abstain
  decision). A site's radius is the largest requested radius it is certified at (a step-function
  lower bound of its real radius). Guarantee: per image *and per radius*, with probability
  >= 1 - alpha no certified site is wrong at that radius. Holm cannot give per-site radii
  sigma * Phi^-1(p_A) at its step-wise levels: the simultaneous bounds compatible with Holm
  (Strassburger & Bretz, 2008) give a rejected site only p_i > tau unless every site is
  rejected, so radii taken from Holm's levels would be invalid.

Scoring (:func:`certified_scores`): at radius r a site counts as predicted c_hat only if it is
certified with radius >= r; every other site is an *error*: a false negative of its true class
and a false positive of every other class (binary: a foreground pixel a false negative, a
background pixel a false positive). Each class's Dice is then a lower bound of its Dice under
any L2 perturbation of norm <= r (at the stated confidence). Counts are summed over images
(pooled Dice, independent of the batch size); per-image values are kept too.

scipy (a dependency of scikit-image) supplies the beta, binomial and normal quantiles; it is
imported on use, keeping ``segshield.metrics`` import-light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segshield.enums import Activation
from segshield.metrics.aggregate import mean_dice_of
from segshield.metrics.confusion import ConfusionCounts, binarize_logits

__all__ = [
    "CORRECTIONS",
    "CertifiedScores",
    "binomial_pvalue",
    "certified_confusion",
    "certified_scores",
    "certify_pixels",
    "clopper_pearson_lower",
    "decisions_from_logits",
    "default_foreground",
    "holm_reject",
    "pixel_counts",
]

CORRECTIONS = ("bonferroni", "holm")
ABSTAIN = -1


def clopper_pearson_lower(k: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a binomial probability at confidence 1 - alpha.

    Args:
        k: successes, int array of any shape, in [0, n].
        n: trials >= 1.
        alpha: level in (0, 1) (already corrected for multiple testing).

    Returns:
        float64 array like ``k`` in [0, 1): Beta(alpha; k, n - k + 1), 0 where k = 0
        (k = n gives alpha ** (1 / n)).
    """
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.int64)
    _check_level(alpha)
    if n < 1 or (k.size and (k.min() < 0 or k.max() > n)):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got n={n} and k of {np.unique(k)[:5]}")
    safe = np.maximum(k, 1)  # Beta(k, .) needs k > 0; k = 0 is masked below
    out = beta.ppf(alpha, safe, n - safe + 1)
    return np.where(k > 0, out, 0.0).astype(np.float64)


def binomial_pvalue(k: np.ndarray | int, n: int, tau: float) -> np.ndarray:
    """Exact one-sided p-value of H0: p <= tau given k successes in n: P(Bin(n, tau) >= k).

    Dual to :func:`clopper_pearson_lower`: the bound at level a exceeds tau iff the p-value
    is < a. Returns float64 like ``k``.
    """
    from scipy.stats import binom

    k = np.asarray(k, dtype=np.int64)
    return np.asarray(binom.sf(k - 1, n, tau), dtype=np.float64)


def holm_reject(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Holm-Bonferroni step-down test: bool mask (same shape) of the rejected hypotheses.

    The j-th smallest p-value (j = 0, 1, ...) is rejected while every p-value up to it is
    < alpha / (m - j); strict, so m = 1 is the plain bound-exceeds-threshold test.
    Controls the family-wise error rate at alpha.
    """
    _check_level(alpha)
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    m = flat.size
    order = np.argsort(flat, kind="stable")
    ok = flat[order] < alpha / (m - np.arange(m))
    stop = m if ok.all() else int(np.argmin(ok))  # first failure ends the step-down
    rejected = np.zeros(m, dtype=bool)
    rejected[order[:stop]] = True
    return rejected.reshape(p.shape)


def decisions_from_logits(
    logits: np.ndarray, activation: Activation | str, threshold: float = 0.5
) -> np.ndarray:
    """Per-site class decisions of a batch of logits.

    Args:
        logits: float (S, K, H, W), or (S, K, D, H, W) for volumes.
        activation: softmax -> arg-max, int16 (S, H, W) in [0, K); sigmoid -> every channel
            ``sigmoid > threshold`` (logit > 0 at 0.5), int16 (S, K, H, W) in {0, 1}.
    """
    logits = np.asarray(logits)
    if logits.ndim not in (4, 5):
        raise ValueError(f"logits must be (S, K, H, W) or (S, K, D, H, W), got {logits.shape}")
    if Activation(activation) == Activation.SOFTMAX:
        return np.argmax(logits, axis=1).astype(np.int16)
    return binarize_logits(logits, threshold).astype(np.int16)


def pixel_counts(decisions: np.ndarray, num_classes: int) -> np.ndarray:
    """How often each class is decided at each site: int (S, *sites) in [0, num_classes) ->
    int64 (num_classes, *sites) (sums to S over axis 0). Sigmoid decisions have 2 classes."""
    d = np.asarray(decisions)
    if d.size and (d.min() < 0 or d.max() >= num_classes):
        raise ValueError(f"decisions must lie in [0, {num_classes}), got [{d.min()}, {d.max()}]")
    return np.stack([np.count_nonzero(d == c, axis=0) for c in range(num_classes)]).astype(np.int64)


def certify_pixels(
    counts0: np.ndarray,
    counts: np.ndarray,
    n: int,
    alpha: float,
    sigma: float,
    correction: str = "bonferroni",
    radii: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Certify every decision site of ONE image (see the module docstring for the guarantee).

    Args:
        counts0: int (K, *sites) counts of the n0 selection samples (picks c_hat).
        counts: int (K, *sites) counts of the n independent estimation samples.
        n: the number of estimation samples (counts sum to n over axis 0).
        alpha: family-wise error level per image, in (0, 1); confidence is 1 - alpha.
        sigma: noise standard deviation (> 0), in input units ([0, 1] images).
        correction: "bonferroni" (per-site radius sigma * Phi^-1(p_A) at level alpha / m) or
            "holm" (step-down at every radius in ``radii``; radius = largest one certified).
        radii: the radii tested by "holm" (ignored by "bonferroni").

    Returns:
        classes: int16 (*sites), c_hat where certified, -1 where abstaining.
        radius: float64 (*sites), >= 0 where certified, 0 where abstaining.
    """
    from scipy.stats import norm

    counts0, counts = np.asarray(counts0), np.asarray(counts)
    if counts0.shape != counts.shape or counts.ndim < 2:
        raise ValueError(f"counts0 {counts0.shape} and counts {counts.shape} must be (K, *sites)")
    if not np.all(counts.sum(axis=0) == n):
        raise ValueError(f"counts must sum to n={n} at every site")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    _check_level(alpha)
    candidate = np.argmax(counts0, axis=0)  # ties: the lowest class, a fixed rule
    wins = np.take_along_axis(counts, candidate[None], axis=0)[0]
    m = wins.size
    if correction == "bonferroni":
        p_a = clopper_pearson_lower(wins, n, alpha / m)
        certified = p_a > 0.5
        radius = np.where(certified, sigma * norm.ppf(np.where(certified, p_a, 0.75)), 0.0)
    elif correction == "holm":
        certified = holm_reject(binomial_pvalue(wins, n, 0.5), alpha)
        radius = np.zeros(wins.shape, dtype=np.float64)
        still = certified
        for r in sorted({float(r) for r in radii or () if r > 0}):
            # Holm is monotone in the p-values, so these sets shrink; the `&` makes sure.
            still = still & holm_reject(binomial_pvalue(wins, n, float(norm.cdf(r / sigma))), alpha)
            radius[still] = r
    else:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    classes = np.where(certified, candidate, ABSTAIN).astype(np.int16)
    return classes, np.asarray(radius, dtype=np.float64)


def default_foreground(activation: Activation | str, num_classes: int) -> tuple[int, ...]:
    """Classes Dice is averaged over: softmax skips class 0 (background), sigmoid uses all."""
    if Activation(activation) == Activation.SOFTMAX:
        return tuple(range(1, num_classes)) if num_classes > 1 else (0,)
    return tuple(range(num_classes))


def _truth_sites(truth: np.ndarray, classes: np.ndarray, softmax: bool) -> np.ndarray:
    t = np.asarray(truth)
    if softmax and t.ndim == classes.ndim + 1 and t.shape[1] == 1:
        t = t[:, 0]  # label maps stored (N, 1, H, W)
    if t.shape != classes.shape:
        raise ValueError(f"truth {np.shape(truth)} does not match the decisions {classes.shape}")
    return t.astype(np.int64)


def certified_confusion(
    classes: np.ndarray,
    radius: np.ndarray,
    truth: np.ndarray,
    r: float,
    activation: Activation | str,
    num_classes: int,
) -> ConfusionCounts:
    """Per-image one-vs-rest counts (N, num_classes) of the prediction certified at radius r.

    Args:
        classes, radius: (N, *sites) from :func:`certify_pixels` per image.
        truth: label maps (N, H, W) or (N, 1, H, W) for softmax; {0, 1} masks (N, C, H, W)
            for sigmoid.
        r: radius >= 0; a site counts only if certified with radius >= r, else it is an error
            (false negative of its true class, false positive of every other class).
        num_classes: K logit channels (sigmoid: C, the channel count).
    """
    softmax = Activation(activation) == Activation.SOFTMAX
    t = _truth_sites(truth, classes, softmax)
    n = classes.shape[0]
    pred = np.where((classes >= 0) & (radius >= r), classes, ABSTAIN).reshape(n, -1)
    t = t.reshape(n, -1)
    if not softmax:  # every channel-site binary: c = 1 counts as the channel's positive
        c = num_classes
        pred, t = pred.reshape(n, c, -1), t.reshape(n, c, -1).astype(bool)
        tp = np.count_nonzero((pred == 1) & t, axis=2)
        fn = np.count_nonzero(t, axis=2) - tp
        tn = np.count_nonzero((pred == 0) & ~t, axis=2)
        fp = np.count_nonzero(~t, axis=2) - tn  # predicted 1 or abstained
        return ConfusionCounts(tp, fp, fn, tn)
    k = num_classes
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"truth labels must lie in [0, {k}), got [{t.min()}, {t.max()}]")
    # One bincount over (image, truth, prediction) with abstention as an extra column k.
    idx = np.arange(n)[:, None] * (k * (k + 1)) + t * (k + 1) + np.where(pred < 0, k, pred)
    cm = np.bincount(idx.ravel(), minlength=n * k * (k + 1)).reshape(n, k, k + 1)
    tp = np.diagonal(cm[:, :, :k], axis1=1, axis2=2)
    fn = cm.sum(axis=2) - tp
    abstained = cm[:, :, k]  # (N, truth class)
    fp = cm[:, :, :k].sum(axis=1) - tp + (abstained.sum(axis=1, keepdims=True) - abstained)
    return ConfusionCounts(tp, fp, fn, pred.shape[1] - tp - fp - fn)


@dataclass(frozen=True)
class CertifiedScores:
    """Certified scores of a set of images at each requested radius (pooled over images).

    Attributes:
        radii: the radii r, ascending as given.
        certified_dice: (R,) foreground-mean Dice of the prediction certified at r, abstentions
            counted as errors; Dice of summed counts (1.0 where a class is empty everywhere).
        certified_share: (R,) share of sites certified at radius >= r AND correct.
        certified_any_share: (R,) share of sites certified at radius >= r, right or wrong.
        abstain_share: share of sites abstaining (radius-independent).
        mean_radius: mean radius of the certified sites (NaN if none).
        per_image_dice: (N, R), NaN where a class has no truth and no prediction in the image.
        per_image_share: (N, R) certified-and-correct share per image.
        per_image_abstain: (N,) abstaining share per image.
        counts: per radius, the per-image counts (N, K) the Dice comes from.
    """

    radii: tuple[float, ...]
    certified_dice: np.ndarray
    certified_share: np.ndarray
    certified_any_share: np.ndarray
    abstain_share: float
    mean_radius: float
    per_image_dice: np.ndarray
    per_image_share: np.ndarray
    per_image_abstain: np.ndarray
    counts: tuple[ConfusionCounts, ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists aligned with ``radii`` (abstain_share repeated per radius, so
        every metric reads the same way), plus per-image values (NaN -> None)."""
        r = len(self.radii)
        return {
            "radii": [float(x) for x in self.radii],
            "certified_dice": _floats(self.certified_dice),
            "certified_share": _floats(self.certified_share),
            "certified_any_share": _floats(self.certified_any_share),
            "abstain_share": [_float(self.abstain_share)] * r,
            "mean_radius": _float(self.mean_radius),
            "per_image": {
                "certified_dice": [_floats(row) for row in self.per_image_dice],
                "certified_share": [_floats(row) for row in self.per_image_share],
                "abstain_share": _floats(self.per_image_abstain),
            },
        }


def _float(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 6)


def _floats(xs: np.ndarray) -> list[float | None]:
    return [_float(x) for x in np.asarray(xs, dtype=np.float64)]


def certified_scores(
    classes: np.ndarray,
    radius: np.ndarray,
    truth: np.ndarray,
    radii: tuple[float, ...] | list[float],
    activation: Activation | str,
    num_classes: int,
    foreground: tuple[int, ...] | None = None,
) -> CertifiedScores:
    """Certified Dice and shares of N images at each radius in ``radii``.

    Args:
        classes, radius: (N, *sites) stacked :func:`certify_pixels` outputs (-1 = abstain).
        truth: softmax: label maps (N, H, W) or (N, 1, H, W) in [0, K); sigmoid: {0, 1} masks
            (N, C, H, W) (binary: (N, 1, H, W)).
        radii: radii r >= 0 to score at.
        num_classes: K logit channels.
        foreground: classes the Dice is averaged over; default :func:`default_foreground`.
    """
    classes, radius = np.asarray(classes), np.asarray(radius, dtype=np.float64)
    if classes.shape != radius.shape or classes.ndim < 3:
        raise ValueError(f"classes {classes.shape} and radius {radius.shape} must be (N, *sites)")
    radii = tuple(float(r) for r in radii)
    if not radii or min(radii) < 0:
        raise ValueError(f"radii must be non-empty and >= 0, got {radii}")
    fg = default_foreground(activation, num_classes) if foreground is None else tuple(foreground)
    t = _truth_sites(truth, classes, Activation(activation) == Activation.SOFTMAX)
    n = classes.shape[0]
    flat_c, flat_r, flat_t = classes.reshape(n, -1), radius.reshape(n, -1), t.reshape(n, -1)
    sites = flat_c.shape[1]
    certified = flat_c >= 0
    counts, dice_all, dice_img, share_all, share_img, any_all = [], [], [], [], [], []
    for r in radii:
        c = certified_confusion(classes, radius, t, r, activation, num_classes)
        counts.append(c)
        dice_all.append(float(mean_dice_of(c.total(), fg)[0]))
        dice_img.append(mean_dice_of(c, fg, empty_value=float("nan")))
        at_r = certified & (flat_r >= r)
        right = np.count_nonzero(at_r & (flat_c == flat_t), axis=1)
        share_img.append(right / sites)
        share_all.append(right.sum() / (n * sites))
        any_all.append(np.count_nonzero(at_r) / (n * sites))
    n_cert = np.count_nonzero(certified)
    return CertifiedScores(
        radii=radii,
        certified_dice=np.asarray(dice_all),
        certified_share=np.asarray(share_all),
        certified_any_share=np.asarray(any_all),
        abstain_share=float(np.count_nonzero(~certified) / (n * sites)),
        mean_radius=float(flat_r[certified].mean()) if n_cert else float("nan"),
        per_image_dice=np.stack(dice_img, axis=1),
        per_image_share=np.stack(share_img, axis=1),
        per_image_abstain=np.count_nonzero(~certified, axis=1) / sites,
        counts=tuple(counts),
    )


def _check_level(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
