"""Engine health: does an engine that runs still compute the source model's masks?

Health is decided on clean images from the *mask agreement* of an engine with the FP32
PyTorch source: the Dice of the engine's predicted masks against the source's predicted masks
(mean over foreground classes for multi-class/multi-label models; the share of images with the
same predicted class for a classifier). It is independent of the logit scale, so a model whose
logits span ±1000 is judged like one whose logits span ±5, and an INT8 engine whose masks
collapse is never "ok".

    ok        agreement >= ok_min            (default 0.97)
    degraded  failed_below <= agreement < ok_min
    failed    agreement < failed_below       (default 0.80), or the engine could not be scored
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from segshield.enums import Health

DEFAULT_OK_MIN = 0.97
DEFAULT_FAILED_BELOW = 0.80


@dataclass(frozen=True)
class HealthThresholds:
    """Mask agreement (in [0, 1]) an engine needs: >= ok_min is ok, < failed_below failed."""

    ok_min: float = DEFAULT_OK_MIN
    failed_below: float = DEFAULT_FAILED_BELOW

    def __post_init__(self) -> None:
        if not (0.0 <= self.failed_below <= self.ok_min <= 1.0):
            raise ValueError(
                "health thresholds need 0 <= failed_below <= ok_min <= 1, got "
                f"failed_below={self.failed_below}, ok_min={self.ok_min}"
            )

    def classify(self, agreement: float | None) -> Health:
        """The health of an engine whose clean mask agreement is `agreement` (None/NaN:
        not measurable, which counts as failed)."""
        if agreement is None or not math.isfinite(agreement):
            return Health.FAILED
        if agreement >= self.ok_min:
            return Health.OK
        if agreement >= self.failed_below:
            return Health.DEGRADED
        return Health.FAILED


@dataclass(frozen=True)
class EngineHealth:
    """One engine's health on `n_images` clean images.

    mask_dice: mask agreement with the source in [0, 1] (None when not measurable).
    flip_share: share of pixels (images, for a classifier) whose prediction differs from the
    source's. reason: a report-ready sentence saying why (always set unless ok).
    """

    status: Health
    mask_dice: float | None
    flip_share: float | None
    n_images: int
    ok_min: float
    failed_below: float
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["status"] = str(self.status)
        return raw


def assess_health(
    mask_dice: float | None,
    flip_share: float | None,
    n_images: int,
    thresholds: HealthThresholds,
    *,
    failure: str | None = None,
) -> EngineHealth:
    """Classify one engine; `failure` (the engine could not be scored) makes it failed."""
    if failure is not None:
        status, reason = Health.FAILED, failure
    else:
        status = thresholds.classify(mask_dice)
        reason = None
        if status != Health.OK:
            shown = "not measurable" if mask_dice is None else f"{mask_dice:.4f}"
            bound = thresholds.failed_below if status == Health.FAILED else thresholds.ok_min
            level = "failed" if status == Health.FAILED else "ok"
            reason = (
                f"clean mask agreement with the source {shown}, below the {level} bound "
                f"{bound:g}, on {n_images} image(s)"
            )
    return EngineHealth(
        status=status,
        mask_dice=mask_dice,
        flip_share=flip_share,
        n_images=int(n_images),
        ok_min=thresholds.ok_min,
        failed_below=thresholds.failed_below,
        reason=reason,
    )


__all__ = [
    "DEFAULT_FAILED_BELOW",
    "DEFAULT_OK_MIN",
    "EngineHealth",
    "HealthThresholds",
    "assess_health",
]
