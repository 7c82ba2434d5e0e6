"""Segmentation, attack and image metrics in pure NumPy (no torch import).

Design after MONAI: pure metric functions over per-image confusion counts, plus a thin
accumulator that sums counts over batches so results do not depend on the batch size.
"""

from __future__ import annotations

from segshield.metrics.accumulator import (
    PER_IMAGE_KEYS,
    SegmentationAccumulator,
    SegmentationMetrics,
)
from segshield.metrics.attack import attack_success, disagreement, fooled_shares
from segshield.metrics.bootstrap import (
    bootstrap_attack_success_ci,
    bootstrap_ci,
    bootstrap_indices,
)
from segshield.metrics.confusion import (
    ConfusionCounts,
    binarize_logits,
    check_binary_mask,
    confusion_counts,
)
from segshield.metrics.image import SSIM_MIN_SIZE, perturbation_norms, ssim
from segshield.metrics.losses import (
    bce_from_logits,
    bce_from_probs,
    bce_logits_per_pixel,
    sigmoid,
)
from segshield.metrics.multiclass import (
    MULTICLASS_PER_IMAGE_KEYS,
    ClassConfusion,
    MultiClassAccumulator,
    MultiClassMetrics,
    check_label_map,
    label_disagreement,
    multiclass_confusion_counts,
    multilabel_confusion_counts,
)
from segshield.metrics.segmentation import (
    FloatOrArray,
    dice,
    iou,
    mean_iou,
    pixel_accuracy,
    pixel_error_l2,
    pixel_error_rms,
    precision,
    recall,
)

__all__ = [
    "MULTICLASS_PER_IMAGE_KEYS",
    "PER_IMAGE_KEYS",
    "SSIM_MIN_SIZE",
    "ClassConfusion",
    "ConfusionCounts",
    "FloatOrArray",
    "MultiClassAccumulator",
    "MultiClassMetrics",
    "SegmentationAccumulator",
    "SegmentationMetrics",
    "attack_success",
    "bce_from_logits",
    "bce_from_probs",
    "bce_logits_per_pixel",
    "binarize_logits",
    "bootstrap_attack_success_ci",
    "bootstrap_ci",
    "bootstrap_indices",
    "check_binary_mask",
    "check_label_map",
    "confusion_counts",
    "dice",
    "disagreement",
    "fooled_shares",
    "iou",
    "label_disagreement",
    "mean_iou",
    "multiclass_confusion_counts",
    "multilabel_confusion_counts",
    "perturbation_norms",
    "pixel_accuracy",
    "pixel_error_l2",
    "pixel_error_rms",
    "precision",
    "recall",
    "sigmoid",
    "ssim",
]
