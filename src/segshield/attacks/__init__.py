"""White-box attacks on segmentation (and classification) models, and the losses they ascend.

``get_attack("pgd", model, "dice", eps=4/255, steps=10)(images, targets)`` returns adversarial
images ``(N, C, H, W)`` in [0, 1] within ``eps`` of ``images`` (in the attack's ``norm``).

Untargeted attacks take the true labels as ``targets``: "fgsm", "bim", "pgd", "apgd"
(L-infinity), "pgdl2", "apgdl2" (L2), the segmentation-specific "segpgd", "cospgd", "dag", and
"sea", the ensemble that keeps each image's worst case over its members (APGD with SEA's losses
"masked_ce", "balanced_masked_ce", "js", and SegPGD). The targeted "asma" takes target masks
(see :mod:`segshield.attacks.targets`) and :func:`asma_report` measures it.
Models returning tuples or dicts are wrapped in :class:`SelectOutput`.
"""

from __future__ import annotations

from segshield.attacks.apgd import APGD, APGDL2
from segshield.attacks.asma import ASMA, asma_report
from segshield.attacks.base import Attack, StepLoss
from segshield.attacks.bim import BIM
from segshield.attacks.cospgd import CosPGD
from segshield.attacks.dag import DAG
from segshield.attacks.ensemble import SEA
from segshield.attacks.fgsm import FGSM
from segshield.attacks.layout import (
    correct_mask,
    cosine_to_target,
    iou_to_target,
    pixel_accuracy,
    predict_like,
    target_scores,
)
from segshield.attacks.losses import (
    LOSSES,
    LossFn,
    accepts_weight,
    balanced_masked_ce_loss,
    bce_loss,
    custom_loss,
    dice_focal_loss,
    dice_loss,
    focal_loss,
    get_loss,
    is_custom_loss,
    js_loss,
    masked_ce_loss,
    registered_losses,
    validate_loss,
)
from segshield.attacks.outputs import SelectOutput, select_output
from segshield.attacks.pgd import PGD
from segshield.attacks.pgdl2 import PGDL2
from segshield.attacks.registry import ATTACKS, get_attack
from segshield.attacks.segpgd import SegPGD
from segshield.attacks.targets import (
    empty_target,
    other_image_target,
    scaled_target,
    shifted_target,
)

__all__ = [
    "APGD",
    "APGDL2",
    "ASMA",
    "ATTACKS",
    "BIM",
    "DAG",
    "FGSM",
    "LOSSES",
    "PGD",
    "PGDL2",
    "SEA",
    "Attack",
    "CosPGD",
    "LossFn",
    "SegPGD",
    "SelectOutput",
    "StepLoss",
    "accepts_weight",
    "asma_report",
    "balanced_masked_ce_loss",
    "bce_loss",
    "correct_mask",
    "cosine_to_target",
    "custom_loss",
    "dice_focal_loss",
    "dice_loss",
    "empty_target",
    "focal_loss",
    "get_attack",
    "get_loss",
    "iou_to_target",
    "is_custom_loss",
    "js_loss",
    "masked_ce_loss",
    "other_image_target",
    "pixel_accuracy",
    "predict_like",
    "registered_losses",
    "scaled_target",
    "select_output",
    "shifted_target",
    "target_scores",
    "validate_loss",
]
