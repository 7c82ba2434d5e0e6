"""Training workflows (beside the audit pipeline): the seed U-Net or any factory's
segmentation model (seed losses, validation, early stopping, degenerate-model check) and the
patch classifier; each writes safetensors weights and a JSON model card."""

from segshield.training.classifier import (
    BUNDLED_CLASSIFIER,
    ClassifierTrainConfig,
    ClassifierTrainResult,
    bundled_patch_classifier,
    classifier_from_card,
    evaluate_classifier,
    train_nuclei_patch_classifier,
    train_patch_classifier,
)
from segshield.training.evaluation import (
    DegenerateModelError,
    degenerate_reason,
    measure,
    validation_split,
)
from segshield.training.fit import BatchProgress, EpochSummary
from segshield.training.harden import (
    EpochRecord,
    HardenConfig,
    HardenResult,
    harden,
    save_hardened,
)
from segshield.training.losses import (
    POS_WEIGHT_CAP,
    TRAIN_LOSSES,
    PosWeight,
    auto_pos_weight,
    training_loss,
)
from segshield.training.train import TrainConfig, TrainResult, augment, train

__all__ = [
    "BUNDLED_CLASSIFIER",
    "POS_WEIGHT_CAP",
    "TRAIN_LOSSES",
    "BatchProgress",
    "ClassifierTrainConfig",
    "ClassifierTrainResult",
    "DegenerateModelError",
    "EpochRecord",
    "EpochSummary",
    "HardenConfig",
    "HardenResult",
    "PosWeight",
    "TrainConfig",
    "TrainResult",
    "augment",
    "auto_pos_weight",
    "bundled_patch_classifier",
    "classifier_from_card",
    "degenerate_reason",
    "evaluate_classifier",
    "harden",
    "measure",
    "save_hardened",
    "train",
    "train_nuclei_patch_classifier",
    "train_patch_classifier",
    "training_loss",
    "validation_split",
]
