"""Typed, versioned audit results. `AuditReport.to_dict()` is what report.json holds; every
renderer and the gate read it back with `AuditReport.from_dict` and compute nothing new.

Conventions: fractions in [0, 1] (not percent); epsilon in [0, 1] pixel units; NaN is stored as
JSON null; the source engine is always named "pytorch".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from segshield.errors import ReportError

SCHEMA_VERSION = 1
REPORT_KIND = "segshield.audit"
SOURCE_ENGINE = "pytorch"
CLEAN = "clean"

# Metric keys of `EngineEval.metrics` (SegmentationMetrics.to_dict without per-image lists).
SEG_METRICS = (
    "accuracy",
    "loss",
    "dice",
    "iou",
    "mean_iou",
    "precision",
    "recall",
    "pixel_error_l2",
    "pixel_error_rms",
)


def _clean_json(value: Any) -> Any:
    """NaN/Inf -> None recursively, tuples -> lists: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _from(cls: type, raw: dict) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class EngineRecord:
    """One engine taking part in the audit, and whether it could run."""

    name: str
    kind: str
    precision: str = "fp32"
    providers: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | unavailable | error
    reason: str | None = None
    artifact: str | None = None
    sha256: str | None = None
    # clean parity against the source on the audited images: max/median/p99 absolute error of
    # the probabilities, share of mask pixels that flip; plus export parity where there is one
    parity: dict | None = None
    build_seconds: float | None = None
    device: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. what FP16 on a CPU really computes
    artifacts: list[dict] = field(default_factory=list)  # {role, path, sha256, bytes}


@dataclass
class EngineEval:
    """One engine evaluated on one set of inputs (clean, or one cell's adversarial images).

    metrics: aggregated over confusion counts (see SEG_METRICS) plus counts and n_images;
    per_image: lists of per-image dice, iou, pixel_error_l2, loss and confusion counts
    tp, fp, fn, tn (in dataset order);
    ci: bootstrap confidence intervals over images, {metric: {"low", "high", "level",
    "n_boot"}} for dice, iou and (adversarial cells) attack_success;
    attack_success: (Dice_clean - Dice_adv) / Dice_clean on this engine (None for clean);
    disagreement: share of pixels whose prediction differs from the source engine's on the
    same inputs; dice_gap: this engine's Dice minus the source engine's on the same inputs.
    """

    engine: str
    status: str = "ok"  # ok | error
    error: str | None = None
    metrics: dict | None = None
    per_image: dict | None = None
    attack_success: float | None = None
    disagreement: float | None = None
    dice_gap: float | None = None
    ci: dict | None = None
    # transfer (adversarial cells, non-source engines): engine AS / source AS, and the shares
    # of images fooled (per-image AS >= the audit's fooled_threshold) on one side only
    transfer_ratio: float | None = None
    fooled_source_only: float | None = None
    fooled_engine_only: float | None = None


@dataclass
class AuditCell:
    """One attack x loss x epsilon: adversarial images crafted once on the source model, then
    replayed on every engine. A failing cell carries its error and loses no other cell."""

    id: str
    attack: str
    loss: str
    epsilon: float
    params: dict = field(default_factory=dict)
    status: str = "ok"  # ok | error
    error: str | None = None
    seconds: float = 0.0
    perturbation: dict | None = None  # l2_mean, linf_max, ssim_mean, ssim_min, per_image
    engines: dict[str, EngineEval] = field(default_factory=dict)
    # Image panels of the worst-hit images: [{"image": name, "index": i, "file": relative PNG
    # path, "dice_clean": d0, "dice_adv": d1, "columns": [titles of the panel's tiles]}].
    panels: list[dict] = field(default_factory=list)
    # Targeted attacks (ASMA): {"target": spec, "source": asma_report columns (IoU to target,
    # pixel accuracy to target, L2, Linf per image and mean), "engines": {name:
    # {"iou_to_target", "pixel_accuracy_to_target", "iou_to_target_per_image"}}}.
    targeted: dict | None = None

    @staticmethod
    def make_id(attack: str, loss: str, epsilon: float) -> str:
        return f"{attack}/{loss}/{epsilon:.6g}"


@dataclass
class AuditReport:
    """Everything one audit measured. `verdict` is filled by the gate when a policy is given."""

    provenance: dict
    config: dict
    model: dict
    dataset: dict
    engines: list[EngineRecord] = field(default_factory=list)
    clean: dict[str, EngineEval] = field(default_factory=dict)
    cells: list[AuditCell] = field(default_factory=list)
    verdict: dict | None = None
    # engine latency rows (segshield.bench.bench_engines): engine, batch_size, median_ms, ...
    latency: list[dict] | None = None
    build: dict | None = None  # engine build facts: calibration source/digest, ONNX export
    schema_version: int = SCHEMA_VERSION
    kind: str = REPORT_KIND

    def to_dict(self) -> dict:
        return _clean_json(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> AuditReport:
        if not isinstance(raw, dict) or raw.get("kind") != REPORT_KIND:
            raise ReportError("not a segshield audit report (its 'kind' is not segshield.audit)")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ReportError(
                f"report schema_version {version!r} is not supported (this segshield reads "
                f"{SCHEMA_VERSION})"
            )
        try:
            cells = []
            for c in raw.get("cells", []):
                cell = _from(AuditCell, c)
                cell.engines = {k: _from(EngineEval, v) for k, v in c.get("engines", {}).items()}
                cells.append(cell)
            return cls(
                provenance=raw["provenance"],
                config=raw["config"],
                model=raw["model"],
                dataset=raw["dataset"],
                engines=[_from(EngineRecord, e) for e in raw.get("engines", [])],
                clean={k: _from(EngineEval, v) for k, v in raw.get("clean", {}).items()},
                cells=cells,
                verdict=raw.get("verdict"),
                latency=raw.get("latency"),
                build=raw.get("build"),
            )
        except (KeyError, TypeError) as exc:
            raise ReportError(f"malformed audit report: {exc!r}") from exc

    @property
    def engine_names(self) -> list[str]:
        return [e.name for e in self.engines]

    def ok_cells(self) -> list[AuditCell]:
        return [c for c in self.cells if c.status == "ok"]
