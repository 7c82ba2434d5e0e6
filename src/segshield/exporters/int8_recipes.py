"""What the INT8 recipe search (:mod:`segshield.exporters.int8_search`) tries and records:
a `Recipe`, one `Trial` per recipe built, and the `SearchResult` kept in the engine record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from segshield.enums import Health
from segshield.exporters.calibration import CALIBRATION_METHODS, CalibrationMethodName
from segshield.exporters.onnx_graph import OnnxVariant

__all__ = ["HealthRule", "Recipe", "SearchResult", "Trial"]


class HealthRule(Protocol):
    """What the search needs of health thresholds (`segshield.engines.health.
    HealthThresholds` is one): the ok bound and a classifier of an agreement."""

    ok_min: float

    def classify(self, agreement: float | None) -> Health: ...


@dataclass(frozen=True)
class Recipe:
    """One static INT8 recipe: weight granularity, calibration method, nodes kept in FP32."""

    per_channel: bool = True
    method: CalibrationMethodName = "minmax"
    excluded: tuple[str, ...] = ()
    symmetric_activations: bool = False
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration method must be one of {CALIBRATION_METHODS}, got {self.method!r}"
            )

    @property
    def fp32_nodes(self) -> int:
        return len(self.excluded)

    def label(self) -> str:
        """Short report text, e.g. "per-channel + entropy + 3 FP32 nodes"."""
        parts = ["per-channel" if self.per_channel else "per-tensor", self.method]
        if self.reduce_range:
            parts.append("7-bit weights")
        if self.symmetric_activations:
            parts.append("symmetric activations")
        if self.excluded:
            n = len(self.excluded)
            parts.append(f"{n} FP32 node{'s' if n != 1 else ''}")
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_channel": self.per_channel,
            "method": self.method,
            "excluded": list(self.excluded),
            "symmetric_activations": self.symmetric_activations,
            "reduce_range": self.reduce_range,
            "label": self.label(),
        }


@dataclass
class Trial:
    """One recipe built and scored. stage: "default", "settings" (no FP32 node) or
    "fallback". latency_ms: median of a few runs on one calibration batch (None when not
    measured: the default recipe was healthy, so nothing was compared). error: why the
    recipe could not be built or run (then mask_dice and health are None)."""

    recipe: Recipe
    stage: str
    mask_dice: float | None = None
    health: str | None = None
    latency_ms: float | None = None
    bytes: int | None = None
    build_seconds: float | None = None
    chosen: bool = False
    error: str | None = None
    path: Path | None = field(default=None, repr=False)
    variant: OnnxVariant | None = field(default=None, repr=False)

    @property
    def healthy(self) -> bool:
        return self.health == str(Health.OK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "stage": self.stage,
            "mask_dice": self.mask_dice,
            "health": self.health,
            "latency_ms": self.latency_ms,
            "bytes": self.bytes,
            "build_seconds": self.build_seconds,
            "chosen": self.chosen,
            "error": self.error,
        }


@dataclass
class SearchResult:
    """The kept recipe (`chosen`, its model at `variant.path`), every trial in the order
    built, whether the kept recipe is healthy, whether a search ran beyond the default, the
    FP32-fallback ranking (when one was measured) and the images that scored the recipes."""

    chosen: Trial
    variant: OnnxVariant
    trials: list[Trial]
    healthy: bool
    searched: bool
    ok_min: float
    n_images: int
    images_sha256: str
    ranking: list[dict[str, Any]] = field(default_factory=list)
    latency_batch: int = 8
    fp32_latency_ms: float | None = None

    @property
    def default(self) -> Trial:
        return self.trials[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "searched": self.searched,
            "healthy": self.healthy,
            "chosen": self.chosen.to_dict(),
            "trials": [t.to_dict() for t in self.trials],
            "ok_min": self.ok_min,
            "scored_on": {
                "images": "calibration",
                "n_images": self.n_images,
                "sha256": self.images_sha256,
            },
            "latency_batch": self.latency_batch,
            "fp32_latency_ms": self.fp32_latency_ms,
            "ranking": self.ranking,
        }

    def note(self) -> str:
        """A report sentence: the default recipe's agreement on the calibration images and,
        when it was not healthy, what the search kept."""
        first = self.default
        if not self.searched:
            return (
                f"INT8 recipe check: the default recipe ({first.recipe.label()}) agreed "
                f"{_fmt(first.mask_dice)} with the source on {self.n_images} calibration "
                "images; no search needed"
            )
        shown = _fmt(first.mask_dice)
        head = (
            f"INT8: the default recipe ({first.recipe.label()}) agreed {shown} with the source "
            f"on {self.n_images} calibration images (healthy needs >= {self.ok_min:g}); "
            f"{len(self.trials)} recipes tried"
        )
        kept = self.chosen
        latency = ""
        if kept.latency_ms is not None:
            latency = f", {kept.latency_ms:.1f} ms per batch of {self.latency_batch}"
            if self.fp32_latency_ms is not None:
                latency += f" against {self.fp32_latency_ms:.1f} ms for the FP32 model"
                if kept.latency_ms >= self.fp32_latency_ms:
                    latency += ": no faster than FP32 on this machine"
        if self.healthy:
            return f"{head}; kept {kept.recipe.label()} (agreement {_fmt(kept.mask_dice)}{latency})"
        return (
            f"{head}; none reached {self.ok_min:g}: kept the best, {kept.recipe.label()} "
            f"(agreement {_fmt(kept.mask_dice)}{latency}) -- this INT8 engine is not healthy"
        )


def _fmt(value: float | None) -> str:
    return "not measurable" if value is None else f"{value:.2f}"
