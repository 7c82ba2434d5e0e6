"""Segmentation losses that attacks ascend.

Every loss has the signature ``loss(logits, target) -> Tensor`` of shape ``(N,)``: one value per
sample, so that an attack can take the gradient of the batch *sum* and still get per-image
gradients (images in a batch do not interact).

Two layouts are accepted:

* binary: ``logits`` ``(N, 1, H, W)`` (any real values), ``target`` ``(N, 1, H, W)`` with values
  in {0, 1} (float, int or bool);
* multi-class: ``logits`` ``(N, C, H, W)`` with ``C >= 2``, ``target`` ``(N, H, W)`` integer
  class indices in ``[0, C)``. Here "bce" is cross-entropy, and Dice/focal use softmax + one-hot.

Half-precision logits are up-cast to float32 so the log-space arithmetic stays stable.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "LossFn",
    "bce_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_loss",
    "get_loss",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss(logits, target) -> (N,)`` per-sample loss; see the module docstring for shapes."""


def _prepare(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Validate shapes/values; return (float logits, target, is_binary).

    Binary targets come back in the logits' dtype, multi-class targets as int64.
    """
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"logits and target must be tensors, got {type(logits).__name__} and "
            f"{type(target).__name__}"
        )
    if logits.ndim != 4:
        raise ValueError(
            f"logits must be 4-D (N, C, H, W), got shape {tuple(logits.shape)} "
            f"(target shape {tuple(target.shape)})"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    # Low-precision logits: do the log-sum-exp arithmetic in float32.
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    n, c, h, w = logits.shape
    if c == 1:
        if tuple(target.shape) != (n, 1, h, w):
            raise ValueError(
                f"binary logits of shape {tuple(logits.shape)} need a target of the same shape, "
                f"got target shape {tuple(target.shape)}"
            )
        if target.is_complex():
            raise ValueError(f"binary target must be real, got dtype {target.dtype}")
        target = target.to(logits.dtype)
        if target.numel() and bool(((target != 0) & (target != 1)).any()):
            raise ValueError(
                f"binary target must contain only 0 and 1, found values in "
                f"[{target.min().item():g}, {target.max().item():g}]"
            )
        return logits, target, True
    if tuple(target.shape) != (n, h, w):
        raise ValueError(
            f"multi-class logits of shape {tuple(logits.shape)} need a target of shape "
            f"{(n, h, w)} (class indices), got target shape {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"multi-class target must hold integer class indices, got dtype {target.dtype}"
        )
    target = target.long()
    if target.numel() and bool(((target < 0) | (target >= c)).any()):
        raise ValueError(
            f"multi-class target must hold class indices in [0, {c}), found values in "
            f"[{target.min().item()}, {target.max().item()}]"
        )
    return logits, target, False


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


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy (binary) or cross-entropy (multi-class) per sample.

    Returns ``(N,)``, computed from logits (log-sum-exp form, stable for any magnitude).
    """
    logits, target, binary = _prepare(logits, target)
    if binary:
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, target, reduction="none")
    return per_pixel.flatten(1).mean(dim=1)


def dice_loss(logits: Tensor, target: Tensor, *, smooth: float = 1.0) -> Tensor:
    """Soft Dice loss ``1 - (2|P∩T| + s) / (|P| + |T| + s)`` per sample, ``(N,)``, in [0, 1].

    ``P`` is sigmoid (binary) or softmax (multi-class) probabilities; sums run over H, W. In the
    multi-class case the Dice is computed per class (background included) and averaged.
    """
    smooth = _check_smooth(smooth)
    logits, target, binary = _prepare(logits, target)
    if binary:
        probs, onehot = torch.sigmoid(logits), target
    else:
        probs = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum(dim=(2, 3))
    denom = probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
    dice = (2.0 * inter + smooth) / (denom + smooth).clamp_min(torch.finfo(probs.dtype).tiny)
    return 1.0 - dice.mean(dim=1)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
) -> Tensor:
    """Focal loss ``-α_t (1 - p_t)^γ log p_t`` (Lin et al., 2017), mean over pixels, ``(N,)``.

    ``p_t`` is the probability of the true class. ``alpha``: binary - a float in [0, 1], the
    weight of the positive class (``1 - alpha`` for the negative one); multi-class - one weight
    per class (a sequence of length C). ``None`` disables weighting. ``gamma=0`` and
    ``alpha=None`` give exactly :func:`bce_loss`.
    """
    gamma = _check_gamma(gamma)
    logits, target, binary = _prepare(logits, target)
    if binary:
        # z_t = logit of the true class; log p_t = logsigmoid(z_t), log(1-p_t) = logsigmoid(-z_t).
        # Both are exact in log space, so neither p_t -> 1 nor p_t -> 0 produce inf/NaN.
        z_t = logits * (2.0 * target - 1.0)
        log_p_t = F.logsigmoid(z_t)
        log_1m_p_t = F.logsigmoid(-z_t)
    else:
        log_probs = torch.log_softmax(logits, dim=1)
        index = target.unsqueeze(1)
        log_p_t = log_probs.gather(1, index).squeeze(1)
        # log(1 - p_t) = logsumexp over the *other* classes - logsumexp over all; C >= 2 keeps it
        # finite, and it stays exact when p_t rounds to 1 (where log1p(-p_t) would give -inf).
        others = logits.scatter(1, index, float("-inf"))
        log_1m_p_t = torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)
    per_pixel = -torch.exp(gamma * log_1m_p_t) * log_p_t
    if alpha is not None:
        per_pixel = per_pixel * _alpha_weights(alpha, target, binary, logits)
    return per_pixel.flatten(1).mean(dim=1)


def _alpha_weights(
    alpha: float | Sequence[float], target: Tensor, binary: bool, logits: Tensor
) -> Tensor:
    """Per-pixel α_t with the shape of the per-pixel loss."""
    if binary:
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
) -> Tensor:
    """:func:`dice_loss` + :func:`focal_loss`, per sample ``(N,)``."""
    return dice_loss(logits, target, smooth=smooth) + focal_loss(
        logits, target, gamma=gamma, alpha=alpha
    )


LOSSES: dict[str, Callable[..., Tensor]] = {
    "bce": bce_loss,
    "dice": dice_loss,
    "focal": focal_loss,
    "dice_focal": dice_focal_loss,
}


def get_loss(name: str, **kwargs: object) -> LossFn:
    """Look up a loss by name and bind its keyword options (e.g. ``gamma`` for "focal").

    Raises ``ValueError`` for an unknown name or an option the loss does not take; option values
    are checked here too, so a bad configuration fails before any attack runs.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    fn = LOSSES[key]
    if not kwargs:
        return fn
    options = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
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
