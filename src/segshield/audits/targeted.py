"""Targeted attacks (seed asma): how close each engine's prediction came to the target."""

from __future__ import annotations

import numpy as np
import torch

from segshield.attacks import asma_report
from segshield.metrics import confusion_counts, iou, pixel_accuracy
from segshield.tasks import Task


def target_closeness(
    spec: str,
    targets: np.ndarray,
    preds: dict[str, np.ndarray],
    model: torch.nn.Module,
    adv: np.ndarray,
    images: np.ndarray,
    task: Task,
) -> dict:
    """IoU and pixel accuracy to the target per engine (foreground vs background; for a
    softmax model any class but 0), plus ASMA's own report on the source model."""
    engines = {}
    for name, pred in preds.items():
        counts = confusion_counts(pred > 0, targets > 0)
        per_iou = iou(counts.tp[:, 0], counts.fp[:, 0], counts.fn[:, 0], empty_value=1.0)
        per_acc = pixel_accuracy(counts.tp[:, 0], counts.fp[:, 0], counts.fn[:, 0], counts.tn[:, 0])
        engines[name] = {
            "iou_to_target": float(np.mean(per_iou)),
            "pixel_accuracy_to_target": float(np.mean(per_acc)),
            "iou_to_target_per_image": [float(v) for v in np.atleast_1d(per_iou)],
        }
    source = asma_report(
        model, torch.from_numpy(adv), torch.from_numpy(images), task.loss_targets(targets)
    )
    return {"target": spec, "source": source, "engines": engines}
