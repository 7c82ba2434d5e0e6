"""Training losses of seed fgsm-unet-family-mri-losses: BCE, Dice, Focal and Dice + Focal
(the seed trains every model on Dice + Focal against class imbalance), with optional weighting
of the foreground pixels (``pos_weight``).

They are the attack losses of :mod:`segshield.attacks.losses` (the same formulas the audit
ascends), averaged over the batch: Dice ``1 - (2|P∩T| + 1) / (|P| + |T| + 1)`` per image and
channel (smooth 1 in numerator and denominator, as the seed adds it against division by zero);
Focal ``-(1 - p_t)^γ log p_t`` (Lin et al., 2017) with ``γ = 2`` by default (the seed's value
did not survive its text; 2 is Lin et al.'s) and no α (``pos_weight`` does the balancing);
Dice + Focal their sum. ``pos_weight`` multiplies the pixel-wise terms (BCE, Focal) of
foreground pixels: for BCE this is ``BCEWithLogitsLoss(pos_weight=...)``. Dice is left
unweighted: it is insensitive to the background's size already.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from segshield.attacks import dice_loss, focal_loss, get_loss
from segshield.errors import SegShieldError

__all__ = ["POS_WEIGHT_CAP", "TRAIN_LOSSES", "PosWeight", "auto_pos_weight", "training_loss"]

TRAIN_LOSSES = ("bce", "dice", "focal", "dice_focal")
POS_WEIGHT_CAP = 100.0
"""``--pos-weight auto`` never exceeds this: a handful of foreground pixels must not make
every background pixel nearly free to misclassify."""

BatchLoss = Callable[[Tensor, Tensor], Tensor]
"""``loss(logits, target) -> scalar``: the mean over the batch of the per-image loss."""


@dataclass(frozen=True)
class PosWeight:
    """The foreground weight used, and for ``auto`` what it was computed from."""

    value: float
    auto: bool = False
    negatives: int | None = None
    positives: int | None = None
    capped: bool = False

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "auto": self.auto,
            "negatives": self.negatives,
            "positives": self.positives,
            "capped": self.capped,
        }


def foreground(masks: np.ndarray | Tensor, multiclass: bool) -> np.ndarray | Tensor:
    """Where the masks are foreground: any non-zero label (multi-class label maps count every
    class but 0), a 1 in any channel of a binary / multi-label mask (per channel)."""
    return masks > 0 if multiclass else masks > 0.5


def auto_pos_weight(masks: np.ndarray, multiclass: bool = False) -> PosWeight:
    """``negatives / positives`` over the training masks, capped at :data:`POS_WEIGHT_CAP`.

    masks: (N, 1, H, W) binary or label maps, or (N, K, H, W) multi-label (each channel's
    pixels count). Raises SegShieldError when the masks hold no foreground at all.
    """
    fg = foreground(masks, multiclass)
    positives = int(np.count_nonzero(fg))
    negatives = int(fg.size) - positives
    if positives == 0:
        raise SegShieldError(
            "--pos-weight auto: the training masks hold no foreground pixel; there is nothing "
            "to learn to segment (check the masks: 0 is background, anything else foreground)"
        )
    ratio = negatives / positives
    value = min(ratio, POS_WEIGHT_CAP)
    return PosWeight(round(value, 4), True, negatives, positives, ratio > POS_WEIGHT_CAP)


def parse_pos_weight(text: str | float, masks: np.ndarray, multiclass: bool) -> PosWeight:
    """``"auto"`` (:func:`auto_pos_weight`) or a number >= 0 (1: no weighting)."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return auto_pos_weight(masks, multiclass)
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SegShieldError(f"--pos-weight must be 'auto' or a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise SegShieldError(f"--pos-weight must be a finite number > 0, got {text!r}")
    return PosWeight(value)


def training_loss(
    name: str, pos_weight: float = 1.0, gamma: float = 2.0, multiclass: bool = False
) -> BatchLoss:
    """The batch loss ``name`` (one of :data:`TRAIN_LOSSES`) with foreground pixels of the
    pixel-wise terms weighted ``pos_weight``.

    logits (N, C, H, W); target: float masks (N, C, H, W) in {0, 1} (binary, multi-label) or
    int64 label maps (N, H, W) (multi-class, ``multiclass=True``; "bce" is then
    cross-entropy). Returns a scalar: the mean of the per-image losses.
    """
    key = name.strip().lower()
    if key not in TRAIN_LOSSES:
        raise SegShieldError(f"unknown training loss {name!r}; choose from {list(TRAIN_LOSSES)}")
    bce = get_loss("bce")

    def weights(target: Tensor) -> Tensor | None:
        if pos_weight == 1.0:
            return None
        fg = foreground(target, multiclass).to(torch.float32)
        return 1.0 + (pos_weight - 1.0) * fg

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        w = weights(target)
        if key == "bce":
            per_image = bce(logits, target, weight=w)
        elif key == "dice":
            per_image = dice_loss(logits, target)
        elif key == "focal":
            per_image = focal_loss(logits, target, gamma=gamma, weight=w)
        else:
            per_image = dice_loss(logits, target) + focal_loss(
                logits, target, gamma=gamma, weight=w
            )
        return per_image.mean()

    return loss
