"""Segmentation, attack and image metrics in pure NumPy/SciPy (no torch import).

Design after MONAI: pure metric functions over per-image, per-class confusion counts
(:class:`ConfusionCounts`, shape (N, C); binary is C = 1), plus one thin accumulator with an
explicit activation that sums counts over batches, so results do not depend on the batch size.
"""

from __future__ import annotations

from segshield.enums import Activation
from segshield.metrics.accumulator import (
    PER_IMAGE_KEYS,
    SURFACE_KEYS,
    Accumulator,
    ClassMetrics,
    MultiClassAccumulator,
    SegmentationAccumulator,
    SegmentationMetrics,
)
from segshield.metrics.aggregate import (
    accuracy_of,
    class_scores,
    foreground_mean,
    mean_dice_of,
    mean_iou_of,
    nanmean,
    wrong_pixels,
)
from segshield.metrics.attack import (
    attack_success,
    disagreement,
    fooled_shares,
    label_disagreement,
)
from segshield.metrics.bootstrap import (
    Statistic,
    bootstrap_attack_success_ci,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_stat,
)
from segshield.metrics.confusion import (
    ClassConfusion,
    ConfusionCounts,
    binarize_logits,
    check_binary_mask,
    check_label_map,
    confusion_counts,
    multiclass_confusion_counts,
    multilabel_confusion_counts,
)
from segshield.metrics.image import SSIM_MIN_SIZE, perturbation_norms, ssim
from segshield.metrics.losses import (
    bce_from_logits,
    bce_from_probs,
    bce_logits_per_pixel,
    sigmoid,
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
from segshield.metrics.surface import (
    SurfaceSummary,
    average_surface_distance,
    hd95,
    mask_surface,
    summarize_surface,
    surface_distances,
    surface_scores,
    surface_scores_batch,
)

# The multi-class results are the one result type now; the old name stays importable.
MultiClassMetrics = SegmentationMetrics
MULTICLASS_PER_IMAGE_KEYS = PER_IMAGE_KEYS

__all__ = [
    "MULTICLASS_PER_IMAGE_KEYS",
    "PER_IMAGE_KEYS",
    "SSIM_MIN_SIZE",
    "SURFACE_KEYS",
    "Accumulator",
    "Activation",
    "ClassConfusion",
    "ClassMetrics",
    "ConfusionCounts",
    "FloatOrArray",
    "MultiClassAccumulator",
    "MultiClassMetrics",
    "SegmentationAccumulator",
    "SegmentationMetrics",
    "Statistic",
    "SurfaceSummary",
    "accuracy_of",
    "attack_success",
    "average_surface_distance",
    "bce_from_logits",
    "bce_from_probs",
    "bce_logits_per_pixel",
    "binarize_logits",
    "bootstrap_attack_success_ci",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_stat",
    "check_binary_mask",
    "check_label_map",
    "class_scores",
    "confusion_counts",
    "dice",
    "disagreement",
    "fooled_shares",
    "foreground_mean",
    "hd95",
    "iou",
    "label_disagreement",
    "mask_surface",
    "mean_dice_of",
    "mean_iou",
    "mean_iou_of",
    "multiclass_confusion_counts",
    "multilabel_confusion_counts",
    "nanmean",
    "perturbation_norms",
    "pixel_accuracy",
    "pixel_error_l2",
    "pixel_error_rms",
    "precision",
    "recall",
    "sigmoid",
    "ssim",
    "summarize_surface",
    "surface_distances",
    "surface_scores",
    "surface_scores_batch",
    "wrong_pixels",
]
