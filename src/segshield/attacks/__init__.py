"""White-box L-infinity attacks on segmentation models, and the losses they ascend.

``get_attack("pgd", model, "dice", eps=4/255, steps=10)(images, targets)`` returns adversarial
images ``(N, C, H, W)`` in [0, 1] within ``eps`` of ``images`` (L-infinity).
"""

from __future__ import annotations

from segshield.attacks.base import Attack
from segshield.attacks.bim import BIM
from segshield.attacks.fgsm import FGSM
from segshield.attacks.losses import (
    LOSSES,
    LossFn,
    bce_loss,
    dice_focal_loss,
    dice_loss,
    focal_loss,
    get_loss,
)
from segshield.attacks.pgd import PGD
from segshield.attacks.registry import ATTACKS, get_attack

__all__ = [
    "ATTACKS",
    "BIM",
    "FGSM",
    "LOSSES",
    "PGD",
    "Attack",
    "LossFn",
    "bce_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_loss",
    "get_attack",
    "get_loss",
]
