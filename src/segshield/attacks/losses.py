"""Segmentation (and classification) losses that attacks ascend.

Every loss has the signature ``loss(logits, target, *, weight=None) -> Tensor`` of shape
``(N,)``: one value per sample, so that an attack can take the gradient of the batch *sum* and
still get per-image gradients (images in a batch do not interact).

Layouts (see :mod:`segshield.attacks.layout`):

* binary: ``logits`` ``(N, 1, H, W)`` (any real values), ``target`` ``(N, 1, H, W)`` with values
  in {0, 1} (float, int or bool);
* multi-label: ``logits`` ``(N, C, H, W)`` with independent sigmoids, ``target`` ``(N, C, H, W)``
  in {0, 1} (e.g. overlapping organ masks); the binary formulas, per channel;
* multi-class: ``logits`` ``(N, C, H, W)`` with ``C >= 2``, ``target`` ``(N, H, W)`` integer
  class indices in ``[0, C)``. Here "bce" is cross-entropy, and Dice/focal use softmax + one-hot;
* classification: ``logits`` ``(N, K)`` with ``target`` ``(N,)`` class indices ("bce" is then
  cross-entropy) or ``(N, K)`` {0, 1}: handled as ``1 x 1`` images.

``weight`` (optional, keyword-only) re-weights the per-pixel terms; it must broadcast to the
target's shape (per pixel *and* channel for sigmoid layouts, per pixel for multi-class). The
weighted pixel-wise losses stay *means over all pixels* (``sum(w * l) / #pixels``, SegPGD's
normalisation), and the weighted Dice uses ``w`` in its sums. Weights are constants (detached).
Segmentation-specific attacks (SegPGD, CosPGD) pass it; a custom loss used with them must take it.

Half-precision logits are up-cast to float32 so the log-space arithmetic stays stable.

SEA's losses (Croce, Singh & Hein, 2024, "Towards Reliable Evaluation and Fast Training of Robust
Semantic Segmentation Models", arXiv 2306.12941) stop pushing on pixels that are already fooled:
"masked_ce" (cross-entropy of the correctly classified pixels only), "balanced_masked_ce" (the
same, each class weighted by its inverse pixel count) and "js" (Jensen-Shannon divergence to the
one-hot target, which saturates at ln 2 by itself). For sigmoid layouts each pixel and channel is
the two-class distribution ``(1 - σ(z), σ(z))``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from segshield.attacks.custom_losses import (
    custom_loss,
    is_custom_loss,
    registered_losses,
    validate_loss,
)
from segshield.attacks.layout import Prepared, prepare, prepare_weight

__all__ = [
    "LOSSES",
    "LossFn",
    "accepts_weight",
    "balanced_masked_ce_loss",
    "bce_loss",
    "custom_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_loss",
    "get_loss",
    "is_custom_loss",
    "js_loss",
    "masked_ce_loss",
    "registered_losses",
    "validate_loss",
]

LossFn = Callable[..., Tensor]
"""``loss(logits, target) -> (N,)`` per-sample loss (the built-in ones also take ``weight=``).
A user's own losses (``mod:fn``, ``file.py:fn``, registered): :mod:`.custom_losses`."""


def _weights(weight: Tensor | None, p: Prepared) -> Tensor | None:
    return None if weight is None else prepare_weight(weight, p)


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not gamma >= 0.0 or gamma == float("inf"):
        raise ValueError(f"focal gamma must be a finite number >= 0, got {gamma}")
    return gamma


def _check_smooth(smooth: float) -> float:
    smooth = float(smooth)
    if not smooth >= 0.0 or smooth == float("inf"):
        raise ValueError(f"dice smooth must be a finite number >= 0, got {smooth}")
    return smooth


def bce_loss(logits: Tensor, target: Tensor, *, weight: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy (sigmoid layouts) or cross-entropy (multi-class,
    classification) per sample.

    Returns ``(N,)``, computed from logits (log-sum-exp form, stable for any magnitude); the mean
    runs over pixels (and channels for multi-label).
    """
    p = prepare(logits, target)
    if p.sigmoid:
        per_pixel = F.binary_cross_entropy_with_logits(p.logits, p.target, reduction="none")
    else:
        per_pixel = F.cross_entropy(p.logits, p.target, reduction="none")
    w = _weights(weight, p)
    if w is not None:
        per_pixel = per_pixel * w
    return per_pixel.flatten(1).mean(dim=1)


def dice_loss(
    logits: Tensor, target: Tensor, *, smooth: float = 1.0, weight: Tensor | None = None
) -> Tensor:
    """Soft Dice loss ``1 - (2|P∩T| + s) / (|P| + |T| + s)`` per sample, ``(N,)``, in [0, 1].

    ``P`` is sigmoid (binary / multi-label) or softmax (multi-class) probabilities; sums run over
    H, W. The Dice is computed per channel (multi-label) or per class (multi-class, background
    included) and averaged. With ``weight`` every sum is weighted: ``Σ w·p·t``, ``Σ w·p``,
    ``Σ w·t``.
    """
    smooth = _check_smooth(smooth)
    p = prepare(logits, target)
    if p.sigmoid:
        probs, onehot = torch.sigmoid(p.logits), p.target
    else:
        probs = torch.softmax(p.logits, dim=1)
        onehot = F.one_hot(p.target, p.logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    w = _weights(weight, p)
    if w is not None:
        w = w if p.sigmoid else w.unsqueeze(1)
        probs_w, onehot_w = probs * w, onehot * w
    else:
        probs_w, onehot_w = probs, onehot
    inter = (probs_w * onehot).sum(dim=(2, 3))
    denom = probs_w.sum(dim=(2, 3)) + onehot_w.sum(dim=(2, 3))
    dice = (2.0 * inter + smooth) / (denom + smooth).clamp_min(torch.finfo(probs.dtype).tiny)
    return 1.0 - dice.mean(dim=1)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Focal loss ``-α_t (1 - p_t)^γ log p_t`` (Lin et al., 2017), mean over pixels, ``(N,)``.

    ``p_t`` is the probability of the true class. ``alpha``: sigmoid layouts - a float in
    [0, 1], the weight of the positive label (``1 - alpha`` for the negative one); multi-class -
    one weight per class (a sequence of length C). ``None`` disables weighting. ``gamma=0`` and
    ``alpha=None`` give exactly :func:`bce_loss`.
    """
    gamma = _check_gamma(gamma)
    p = prepare(logits, target)
    if p.sigmoid:
        # z_t = logit of the true class; log p_t = logsigmoid(z_t), log(1-p_t) = logsigmoid(-z_t).
        # Both are exact in log space, so neither p_t -> 1 nor p_t -> 0 produce inf/NaN.
        z_t = p.logits * (2.0 * p.target - 1.0)
        log_p_t = F.logsigmoid(z_t)
        log_1m_p_t = F.logsigmoid(-z_t)
    else:
        log_probs = torch.log_softmax(p.logits, dim=1)
        index = p.target.unsqueeze(1)
        log_p_t = log_probs.gather(1, index).squeeze(1)
        # log(1 - p_t) = logsumexp over the *other* classes - logsumexp over all; C >= 2 keeps it
        # finite, and it stays exact when p_t rounds to 1 (where log1p(-p_t) would give -inf).
        others = p.logits.scatter(1, index, float("-inf"))
        log_1m_p_t = torch.logsumexp(others, dim=1) - torch.logsumexp(p.logits, dim=1)
    per_pixel = -torch.exp(gamma * log_1m_p_t) * log_p_t
    if alpha is not None:
        per_pixel = per_pixel * _alpha_weights(alpha, p.target, p.sigmoid, p.logits)
    w = _weights(weight, p)
    if w is not None:
        per_pixel = per_pixel * w
    return per_pixel.flatten(1).mean(dim=1)


def _alpha_weights(
    alpha: float | Sequence[float], target: Tensor, sigmoid: bool, logits: Tensor
) -> Tensor:
    """Per-pixel α_t with the shape of the per-pixel loss."""
    if sigmoid:
        if isinstance(alpha, Sequence) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"binary focal alpha must be a float in [0, 1], got {alpha!r}")
        a = float(alpha)
        return a * target + (1.0 - a) * (1.0 - target)
    n_classes = logits.shape[1]
    if not isinstance(alpha, Sequence) or len(alpha) != n_classes:
        raise ValueError(
            f"multi-class focal alpha must be a sequence of {n_classes} per-class weights, "
            f"got {alpha!r}"
        )
    weights = torch.tensor([float(a) for a in alpha], dtype=logits.dtype, device=logits.device)
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"focal alpha weights must be finite and >= 0, got {alpha!r}")
    return weights[target]


def dice_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """:func:`dice_loss` + :func:`focal_loss`, per sample ``(N,)``."""
    return dice_loss(logits, target, smooth=smooth, weight=weight) + focal_loss(
        logits, target, gamma=gamma, alpha=alpha, weight=weight
    )


def _per_pixel_ce(p: Prepared) -> Tensor:
    """Cross-entropy per element of the working target layout (BCE for sigmoid layouts)."""
    if p.sigmoid:
        return F.binary_cross_entropy_with_logits(p.logits, p.target, reduction="none")
    return F.cross_entropy(p.logits, p.target, reduction="none")


def _correct(p: Prepared) -> Tensor:
    """Where the hard prediction equals the target, as 0/1 in the logits' dtype (a constant)."""
    if p.sigmoid:
        hit = (p.logits.detach() > 0) == (p.target > 0.5)
    else:
        hit = p.logits.detach().argmax(dim=1) == p.target
    return hit.to(p.logits.dtype)


def masked_ce_loss(logits: Tensor, target: Tensor, *, weight: Tensor | None = None) -> Tensor:
    """SEA's masked cross-entropy ``L_MCE = 1/n · Σ_{j correct} CE_j`` per sample, ``(N,)``.

    Only the elements (pixels; pixel-channels for sigmoid layouts) the model currently gets
    right contribute, but the sum is divided by *all* ``n`` of them, so the loss falls as pixels
    are fooled and already fooled pixels get no gradient. The mask is a constant of the call
    (detached). With every element correct it equals :func:`bce_loss`.
    """
    p = prepare(logits, target)
    per_pixel = _per_pixel_ce(p) * _correct(p)
    w = _weights(weight, p)
    if w is not None:
        per_pixel = per_pixel * w
    return per_pixel.flatten(1).mean(dim=1)


def _balance(p: Prepared) -> Tensor:
    """Per-element weights ``m / (k · n_c)``: ``n_c`` the pixels of the element's true class in
    its image (per channel for sigmoid layouts, classes 0 and 1), ``k`` the classes present,
    ``m`` the pixels per image (channel), so the weights of an image (channel) average to 1."""
    dtype = p.logits.dtype
    if p.sigmoid:
        ones = p.target.sum(dim=(2, 3), keepdim=True)
        total = float(p.target.shape[2] * p.target.shape[3])
        zeros = total - ones
        count = torch.where(p.target > 0.5, ones, zeros)
        present = (ones > 0).to(dtype) + (zeros > 0).to(dtype)
    else:
        onehot = F.one_hot(p.target.flatten(1), p.logits.shape[1]).to(dtype)  # (N, HW, C)
        per_class = onehot.sum(dim=1)  # (N, C)
        count = per_class.gather(1, p.target.flatten(1)).view_as(p.target)
        present = (per_class > 0).to(dtype).sum(dim=1).view(-1, 1, 1)
        total = float(p.target.shape[1] * p.target.shape[2])
    return total / (present * count)  # count >= 1: the element's own class is present


def balanced_masked_ce_loss(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None
) -> Tensor:
    """SEA's class-balanced masked cross-entropy per sample, ``(N,)``.

    :func:`masked_ce_loss` with each correctly classified element of true class ``c`` weighted
    by ``1 / n_c`` (``n_c``: pixels of class ``c`` in the image's target; per channel, for the
    labels 0 and 1, in sigmoid layouts), so small structures count as much as large ones. The
    weights are normalised to average 1 over an image (``m / (k · n_c)``, ``m`` pixels, ``k``
    classes present), so the result is the mean over the present classes of each class's
    mean masked CE - on the scale of a mean, and equal to :func:`masked_ce_loss` when the
    classes are equally frequent. (The reference code weights by ``1 - n_c / m`` instead.)
    """
    p = prepare(logits, target)
    per_pixel = _per_pixel_ce(p) * _correct(p) * _balance(p)
    w = _weights(weight, p)
    if w is not None:
        per_pixel = per_pixel * w
    return per_pixel.flatten(1).mean(dim=1)


def js_loss(logits: Tensor, target: Tensor, *, weight: Tensor | None = None) -> Tensor:
    """SEA's Jensen-Shannon loss: ``JS(P_j ‖ onehot(y_j))`` averaged over elements, ``(N,)``.

    Against a one-hot target the divergence depends only on the probability ``p_t`` of the
    true label: ``JS = ln 2 + (p_t ln p_t - (1 + p_t) ln(1 + p_t)) / 2``, from 0 (``p_t = 1``)
    to ``ln 2`` (``p_t = 0``). Not masked (as in the paper): it saturates by itself once a
    pixel is fooled with confidence. ``P`` is the softmax (multi-class) or the two-class
    ``(1 - σ(z), σ(z))`` per pixel and channel (sigmoid layouts); ``p_t`` is taken in log
    space (``exp(log p_t)``), so huge logits give neither inf nor NaN.
    """
    p = prepare(logits, target)
    if p.sigmoid:
        log_p_t = F.logsigmoid(p.logits * (2.0 * p.target - 1.0))
    else:
        log_p_t = torch.log_softmax(p.logits, dim=1).gather(1, p.target.unsqueeze(1)).squeeze(1)
    # The same value written as three terms that all vanish at p_t = 1 (q = 1 - p_t via expm1),
    # so a nearly right pixel does not cancel ln 2 against ln 2 into a tiny negative number.
    p_t, q = torch.exp(log_p_t), -torch.expm1(log_p_t)
    per_pixel = 0.5 * (p_t * log_p_t - (2.0 - q) * torch.log1p(-0.5 * q) + q * math.log(2.0))
    w = _weights(weight, p)
    if w is not None:
        per_pixel = per_pixel * w
    return per_pixel.flatten(1).mean(dim=1)


LOSSES: dict[str, Callable[..., Tensor]] = {
    "bce": bce_loss,
    "dice": dice_loss,
    "focal": focal_loss,
    "dice_focal": dice_focal_loss,
    "masked_ce": masked_ce_loss,
    "balanced_masked_ce": balanced_masked_ce_loss,
    "js": js_loss,
}


def get_loss(name: str, **kwargs: object) -> LossFn:
    """Look up a loss by name and bind its keyword options (e.g. ``gamma`` for "focal"); a
    ``package.module:fn`` or ``file.py:fn`` name is a user's loss (:func:`custom_loss`),
    its options bound unchecked.

    Raises ``ValueError`` for an unknown name or an option the loss does not take; option values
    are checked here too, so a bad configuration fails before any attack runs.
    """
    if is_custom_loss(name):
        fn = custom_loss(name)
        return functools.partial(fn, **kwargs) if kwargs else fn
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    fn = LOSSES[key]
    if not kwargs:
        return fn
    options = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "weight"  # weight: per call
    ]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ValueError(
            f"loss {key!r} got unknown option(s) {unknown}; valid options: {options or 'none'}"
        )
    if "gamma" in kwargs:
        _check_gamma(kwargs["gamma"])  # type: ignore[arg-type]
    if "smooth" in kwargs:
        _check_smooth(kwargs["smooth"])  # type: ignore[arg-type]
    bound = functools.partial(fn, **kwargs)
    functools.update_wrapper(bound, fn)  # keep __name__ for reprs and reports
    return bound


def accepts_weight(loss: Callable[..., Any]) -> bool:
    """Whether ``loss`` can be called with a ``weight=`` keyword (the built-in losses can)."""
    try:
        params = inspect.signature(loss).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume the plain form
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "weight" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )
