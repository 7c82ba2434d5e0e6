"""Training workflows (beside the audit pipeline): the seed U-Net and the patch classifier;
each writes safetensors weights and a JSON model card."""

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
from segshield.training.harden import (
    EpochRecord,
    HardenConfig,
    HardenResult,
    harden,
    save_hardened,
)
from segshield.training.train import TrainConfig, TrainResult, augment, train

__all__ = [
    "BUNDLED_CLASSIFIER",
    "ClassifierTrainConfig",
    "ClassifierTrainResult",
    "EpochRecord",
    "HardenConfig",
    "HardenResult",
    "TrainConfig",
    "TrainResult",
    "augment",
    "bundled_patch_classifier",
    "classifier_from_card",
    "evaluate_classifier",
    "harden",
    "save_hardened",
    "train",
    "train_nuclei_patch_classifier",
    "train_patch_classifier",
]
