"""What training measures, with the audit's conventions: the held-out validation split (by
volume when the data knows its volumes), metrics from :mod:`segshield.metrics` through the
audit's task (foreground Dice pooled over confusion counts; an empty-truth image has no
per-image Dice), and the check that a model does not predict one class everywhere.

Undefined ratios stay undefined: a card's precision when nothing was predicted (TP + FP = 0)
is null, never the "perfect" 1.0 a convention value would claim.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch

from segshield.devices import module_device
from segshield.enums import Activation, TaskKind
from segshield.errors import SegShieldError
from segshield.metrics import Accumulator, SegmentationMetrics
from segshield.tasks import SegmentationTask, make_task, metrics_record

__all__ = [
    "DegenerateModelError",
    "degenerate_reason",
    "measure",
    "metrics_dict",
    "segmentation_task",
    "validation_split",
]


class DegenerateModelError(SegShieldError):
    """The trained model predicts one class everywhere where the truth has several. The
    weights and card were written (``result``); the CLI exits 1 unless --allow-degenerate."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


def segmentation_task(num_classes: int, mask_channels: int, threshold: float = 0.5):
    """The audit's task for a model trained on these masks: multi-label when the masks have
    one channel per label, multi-class for ``num_classes > 1`` label maps, else binary."""
    if mask_channels > 1:
        return make_task(TaskKind.MULTILABEL, mask_channels, threshold)
    if num_classes > 1:
        return make_task(TaskKind.MULTICLASS, num_classes, threshold)
    return make_task(TaskKind.BINARY, 1, threshold)


def measure(
    model: torch.nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    task: SegmentationTask,
    batch_size: int = 8,
) -> SegmentationMetrics:
    """Clean metrics of ``model`` (eval mode, no gradients) on images (N, C, H, W) float32 and
    masks as the task holds them. Accumulated like the audit's, with ``empty_value`` NaN so
    a ratio with a zero denominator is undefined (JSON null) instead of 1."""
    acc = Accumulator(
        task.activation, task.num_classes, threshold=task.threshold, empty_value=math.nan
    )
    model.eval()
    device = module_device(model)
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i : i + batch_size]).to(device)
            acc.update(model(x).float().cpu().numpy(), masks[i : i + batch_size])
    return acc.result()


def metrics_dict(m: SegmentationMetrics) -> dict:
    """The report's ``Metrics`` schema as a plain dict (NaN -> None)."""
    return asdict(metrics_record(m))


def _channel_state(tp: int, fp: int, fn: int, tn: int) -> tuple[str | None, bool]:
    """(what a constant prediction is: "background"/"foreground"/None, truth is constant)."""
    predicted_on, predicted_off = tp + fp, tn + fn
    truth_constant = (tp + fn) == 0 or (tn + fp) == 0
    if predicted_on == 0:
        return "background", truth_constant
    if predicted_off == 0:
        return "foreground", truth_constant
    return None, truth_constant


def degenerate_reason(m: SegmentationMetrics, where: str) -> str | None:
    """Why the predictions behind ``m`` are degenerate, or None.

    Binary: the model predicts background everywhere (TP = FP = 0) or foreground everywhere
    while the truth has both. Multi-label: any label channel constant while its truth is not.
    Multi-class: one class predicted at every pixel while the truth has several classes.
    where: the data's name for the message ("the validation split").
    """
    per_class = m.per_class
    if m.activation == Activation.SOFTMAX:
        predicted = [c.index for c in per_class if c.tp + c.fp > 0]
        present = [c.index for c in per_class if c.tp + c.fn > 0]
        if len(predicted) == 1 and len(present) > 1:
            return f"it predicts class {predicted[0]} at every pixel of {where}"
        return None
    bad = []
    for c in per_class:
        constant, truth_constant = _channel_state(c.tp, c.fp, c.fn, c.tn)
        if constant is not None and not truth_constant:
            label = "" if len(per_class) == 1 else f"label {c.index}: "
            bad.append(f"{label}{constant} everywhere (TP {c.tp}, FP {c.fp})")
    if not bad:
        return None
    return f"it predicts {'; '.join(bad)} on {where}"


def validation_split(
    n: int, volumes: list | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices (train, validation) of ``n`` images and how they were split.

    volumes: a volume/patient id per image (``dataset.meta["volume"]``): whole volumes go to
    one side, so neighbouring slices of one patient never sit on both; None: images are split
    one by one. About ``fraction`` of the groups (at least one, never all) go to validation,
    chosen by a generator seeded ``seed``. ``fraction`` 0, or a single group: no validation.
    """
    if not 0.0 <= fraction < 1.0:
        raise SegShieldError(f"--val-fraction must be in [0, 1), got {fraction}")
    if volumes is not None and len(volumes) != n:
        raise SegShieldError(f"meta['volume'] has {len(volumes)} ids for {n} images")
    by = "volume" if volumes is not None else "image"
    groups = [str(v) for v in volumes] if volumes is not None else [str(i) for i in range(n)]
    unique = sorted(set(groups))
    everything = np.arange(n)
    if fraction == 0.0 or len(unique) < 2:
        return everything, everything[:0], "none"
    k = min(max(1, round(fraction * len(unique))), len(unique) - 1)
    rng = np.random.default_rng(seed)
    held = {unique[i] for i in rng.permutation(len(unique))[:k]}
    is_val = np.array([g in held for g in groups])
    return everything[~is_val], everything[is_val], by
