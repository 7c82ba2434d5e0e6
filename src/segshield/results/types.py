"""Typed, versioned audit results: what report.json holds.

Every renderer and the gate read a report back with :meth:`AuditReport.from_dict` and compute
nothing new. Conventions: fractions in [0, 1] (not percent); epsilon in [0, 1] pixel units;
NaN is stored as JSON null; the source engine is always named "pytorch".
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from segshield.engines.records import EngineRecord
from segshield.enums import Status, TaskKind

if TYPE_CHECKING:
    from segshield.results.evaluation import Evaluation

SCHEMA_VERSION = 2
REPORT_KIND = "segshield.audit"
SOURCE_ENGINE = "pytorch"
CLEAN = "clean"


def clean_json(value: Any) -> Any:
    """NaN/Inf -> None recursively, tuples -> lists, NumPy scalars -> Python: strict JSON."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()  # NumPy scalars
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def from_fields(cls: type, raw: dict) -> Any:
    """An instance of dataclass ``cls`` from the known keys of ``raw`` (newer keys ignored)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class Interval:
    """A percentile bootstrap interval over images; low/high None when undefined."""

    low: float | None
    high: float | None
    level: float = 0.95
    n_boot: int = 0


@dataclass
class ClassScores:
    """One class's one-vs-rest scores over the whole set."""

    index: int
    name: str | None = None
    foreground: bool = True
    dice: float | None = None
    iou: float | None = None
    precision: float | None = None
    recall: float | None = None  # for a classifier: the accuracy on this class's images
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    hd95: float | None = None  # mean over images with the class in truth and prediction
    asd: float | None = None


@dataclass
class Metrics:
    """Scores aggregated from confusion counts summed over images (see
    :class:`segshield.metrics.SegmentationMetrics` for each definition). Ratios in [0, 1];
    loss in nats; pixel_error_l2 in pixels; tp..tn are foreground totals.

    hd95 / asd: mean over the images where defined of the per-image 95th-percentile Hausdorff
    distance / average surface distance, in ``surface_unit`` ("pixel" or "mm"); None when not
    measured (classifiers, older reports) or defined for no image. Undefined for an image:
    an empty ground truth (counted in ``n_empty_truth``) or a prediction that misses a class
    of the ground truth entirely (counted in ``n_surface_undefined``). The gate reads hd95 /
    asd as undefined, so failing, where ``n_surface_undefined`` > 0 (:meth:`EngineEval.value`).
    """

    accuracy: float | None = None
    loss: float | None = None
    dice: float | None = None
    iou: float | None = None
    mean_iou: float | None = None
    precision: float | None = None
    recall: float | None = None
    pixel_error_l2: float | None = None
    pixel_error_rms: float | None = None
    dice_per_image_mean: float | None = None
    dice_per_volume_mean: float | None = None  # slices of volumes: mean of volume Dice
    hd95: float | None = None
    asd: float | None = None
    n_images: int = 0
    n_empty_truth: int = 0  # images whose ground truth has no foreground
    n_surface_undefined: int = 0  # images whose prediction misses a ground-truth class
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    threshold: float | None = None
    num_classes: int = 1
    activation: str = "sigmoid"
    surface_unit: str | None = None  # of hd95/asd: "pixel", or "mm" (dataset spacing)
    per_class: list[ClassScores] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: dict) -> Metrics:
        m = from_fields(cls, raw)
        per_class = raw.get("per_class") or []
        if isinstance(per_class, dict):  # schema 1: keyed by the class index as a string
            per_class = [{"index": int(k), **v} for k, v in per_class.items()]
        m.per_class = [from_fields(ClassScores, c) for c in per_class]
        return m


@dataclass
class PerVolume:
    """Scores per volume (patient) when the images are slices of volumes: each volume's
    slices' confusion counts summed, then scored (a volume Dice, not a mean of slice Dice);
    None where undefined (a volume without foreground in truth and prediction)."""

    names: list[str] = field(default_factory=list)
    n_slices: list[int] = field(default_factory=list)
    dice: list[float | None] = field(default_factory=list)


@dataclass
class PerImage:
    """Per-image values in dataset order: foreground-mean dice/iou, pixel error, loss, the
    foreground-summed confusion counts, for classifiers the predicted class and, for
    segmentation, hd95/asd (None where undefined; the lists None when not measured)."""

    dice: list[float | None] = field(default_factory=list)
    iou: list[float | None] = field(default_factory=list)
    pixel_error_l2: list[float | None] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    tp: list[int] = field(default_factory=list)
    fp: list[int] = field(default_factory=list)
    fn: list[int] = field(default_factory=list)
    tn: list[int] = field(default_factory=list)
    pred: list[int] | None = None
    hd95: list[float | None] | None = None
    asd: list[float | None] | None = None


@dataclass
class Perturbation:
    """Size and visibility of the perturbation: L2/L∞ in [0, 1] pixel units, SSIM vs clean;
    per_image: {"l2", "linf", "ssim"} lists in dataset order."""

    l2_mean: float | None = None
    l2_max: float | None = None
    linf_max: float | None = None
    ssim_mean: float | None = None
    ssim_min: float | None = None
    per_image: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass
class Panel:
    """An image panel of a worst-hit image: a PNG path relative to the report's folder."""

    image: str
    index: int
    file: str
    dice_clean: float | None = None
    dice_adv: float | None = None
    columns: list[str] = field(default_factory=list)


# Comparisons of an evaluation with the clean run and the source (audits/compare.py).
COMPARISONS = (
    "attack_success",
    "disagreement",
    "dice_gap",
    "transfer_ratio",
    "fooled_source_only",
    "fooled_engine_only",
    "flip_rate",
    "success_rate",
)


# Surface distances: undefined for a whole evaluation when undefined for one image.
SURFACE_METRICS = ("hd95", "asd")


@dataclass
class EngineEval:
    """One engine evaluated on one set of inputs (clean, or one cell's adversarial images).

    ci: bootstrap intervals over images by metric name (the task's primary metrics and, on
    adversarial cells, attack_success). Comparisons (None where undefined): attack_success =
    relative drop of the task's primary metric (Dice; accuracy for a classifier) from clean on
    this engine; disagreement = share of pixels whose prediction differs from the source's on
    the same inputs; dice_gap = this engine's Dice minus the source's; transfer_ratio = engine
    AS / source AS; fooled_source_only / fooled_engine_only = shares of images fooled (per-image
    AS >= the audit's fooled_threshold) on one side only; flip_rate = share of pixels (images,
    for a classifier) whose prediction changed from the clean prediction on this engine;
    success_rate = share of images fooled among those with a non-zero clean score.
    """

    engine: str
    status: Status = Status.OK
    error: str | None = None
    metrics: Metrics | None = None
    per_image: PerImage | None = None
    per_volume: PerVolume | None = None
    ci: dict[str, Interval] | None = None
    attack_success: float | None = None
    disagreement: float | None = None
    dice_gap: float | None = None
    transfer_ratio: float | None = None
    fooled_source_only: float | None = None
    fooled_engine_only: float | None = None
    flip_rate: float | None = None
    success_rate: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.OK and self.metrics is not None

    def value(self, name: str) -> float | None:
        """A gateable number by name: a Metrics field, a comparison, or ``<metric>_ci_low``
        / ``<metric>_ci_high`` (see :data:`segshield.results.catalogue.EVAL_METRICS`).

        ``hd95`` / ``asd`` are None (undefined: a gate rule on them fails here) when some
        image's prediction missed a ground-truth class entirely (``n_surface_undefined`` > 0):
        the stored mean over the other images would hide the worst images."""
        metrics = self.metrics
        if name in SURFACE_METRICS and metrics is not None and metrics.n_surface_undefined:
            return None
        for suffix, attr in (("_ci_low", "low"), ("_ci_high", "high")):
            if name.endswith(suffix):
                interval = (self.ci or {}).get(name[: -len(suffix)])
                return None if interval is None else getattr(interval, attr)
        if name in COMPARISONS:
            return getattr(self, name)
        return None if self.metrics is None else getattr(self.metrics, name, None)

    @classmethod
    def from_dict(cls, raw: dict) -> EngineEval:
        ev = from_fields(cls, raw)
        ev.status = Status(raw.get("status", "ok"))
        ev.metrics = None if raw.get("metrics") is None else Metrics.from_dict(raw["metrics"])
        ev.per_image = (
            None if raw.get("per_image") is None else from_fields(PerImage, raw["per_image"])
        )
        volumes = raw.get("per_volume")
        ev.per_volume = None if volumes is None else from_fields(PerVolume, volumes)
        ci = raw.get("ci")
        ev.ci = None if ci is None else {k: from_fields(Interval, v) for k, v in ci.items() if v}
        return ev


@dataclass
class AuditCell:
    """One attack x loss x epsilon: adversarial images crafted once on the source model, then
    replayed on every engine. A failing cell carries its error and loses no other cell.

    targeted (targeted attacks, ASMA): {"target": spec, "source": ASMA's own report (IoU and
    pixel accuracy to the target, L2, L∞), "engines": {name: {"iou_to_target",
    "pixel_accuracy_to_target", "iou_to_target_per_image"}}}.
    """

    id: str
    attack: str
    loss: str
    epsilon: float
    params: dict = field(default_factory=dict)
    status: Status = Status.OK
    error: str | None = None
    seconds: float = 0.0
    perturbation: Perturbation | None = None
    engines: dict[str, EngineEval] = field(default_factory=dict)
    panels: list[Panel] = field(default_factory=list)
    targeted: dict | None = None
    # ensembles (SEA): {"members", "wins", "winner_per_image"}, see audits/loop.py
    ensemble: dict | None = None
    # report-ready sentences about side effects that cost no measurement (a panel not written)
    warnings: list[str] = field(default_factory=list)

    @staticmethod
    def make_id(attack: str, loss: str, epsilon: float) -> str:
        return f"{attack}/{loss}/{epsilon:.6g}"

    @classmethod
    def from_dict(cls, raw: dict) -> AuditCell:
        cell = from_fields(cls, raw)
        cell.status = Status(raw.get("status", "ok"))
        cell.engines = {k: EngineEval.from_dict(v) for k, v in (raw.get("engines") or {}).items()}
        pert = raw.get("perturbation")
        cell.perturbation = None if pert is None else from_fields(Perturbation, pert)
        cell.panels = [from_fields(Panel, p) for p in raw.get("panels") or []]
        return cell


@dataclass
class AuditReport:
    """Everything one audit measured; ``task`` says what the model does. ``verdict`` is
    filled by the gate when a policy is given; ``skipped``: attacks that do not apply to the
    task, with the reason ([{"attack", "reason"}])."""

    provenance: dict
    config: dict
    model: dict
    dataset: dict
    task: TaskKind = TaskKind.BINARY
    engines: list[EngineRecord] = field(default_factory=list)
    clean: dict[str, EngineEval] = field(default_factory=dict)
    cells: list[AuditCell] = field(default_factory=list)
    verdict: dict | None = None
    # engine latency rows (segshield.bench.bench_engines): engine, batch_size, median_ms, ...
    latency: list[dict] | None = None
    build: dict | None = None  # engine build facts: calibration source/digest, ONNX export
    skipped: list[dict] = field(default_factory=list)
    # how far the verdict can be trusted: worst case per engine, masking warnings
    # (segshield.results.evaluation.Evaluation); None in reports written before it existed
    evaluation: Evaluation | None = None
    # randomized-smoothing certification: {"settings": {...}, "engines": {name: {...}}}
    certified: dict | None = None
    # content hash of the measured sections (segshield.results.integrity), set when written
    integrity: dict | None = None
    schema_version: int = SCHEMA_VERSION
    kind: str = REPORT_KIND

    def to_dict(self) -> dict:
        raw = asdict(self)
        raw["engines"] = [e.to_dict() for e in self.engines]
        return clean_json(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> AuditReport:
        """Read a report of schema 2, or of schema 1 (converted on the way in)."""
        from segshield.results.reader import report_from_dict

        return report_from_dict(raw)

    @property
    def engine_names(self) -> list[str]:
        return [e.name for e in self.engines]

    @property
    def primary_metric(self) -> str:
        """The metric attack success is measured on: accuracy for a classifier, else Dice."""
        return "accuracy" if self.task == TaskKind.CLASSIFICATION else "dice"

    def ok_cells(self) -> list[AuditCell]:
        return [c for c in self.cells if c.status == Status.OK]
