"""Audit configuration: one frozen object built by the CLI (or by users in Python)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

# The default engine matrix and epsilon presets are defined once, where they belong.
from segshield.engines import DEFAULT_ENGINES, ENGINE_SPECS, resolve_engine_names
from segshield.engines.external import ENGINE_FILE_SUFFIXES
from segshield.enums import TaskKind
from segshield.epsilon import ADVUNET_EPSILONS as ADVUNET_EPSILONS  # re-exported
from segshield.epsilon import DEFAULT_EPSILONS
from segshield.models import ModelSpec

TASK_KINDS = tuple(str(k) for k in TaskKind)

ENGINES = tuple(ENGINE_SPECS)

DEFAULT_ATTACKS = ("fgsm", "bim", "pgd")
DEFAULT_LOSSES = ("bce",)
# SEA's members (attacks/ensemble.py): APGD with each of SEA's losses, plus SegPGD with the
# cell's own loss ("*")
DEFAULT_SEA_MEMBERS = (
    "apgd:masked_ce",
    "apgd:balanced_masked_ce",
    "apgd:js",
    "segpgd:*",
)

_DEVICE = re.compile(r"cpu|auto|cuda(:[0-9]+)?")

# Fields that steer how an audit runs, not what it measures: a finished cell written with
# other values of these is still this audit's cell (see audits/checkpoint.py).
RUN_CONTROL = (
    "out_dir",
    "resume",
    "engine_cache",
    "engine_cache_dir",
    "bench",
    "mlflow",
    "mlflow_tracking_uri",
    "mlflow_experiment",
    "mlflow_log_engines",
)


@dataclass(frozen=True)
class AuditConfig:
    """Everything that decides what an audit measures.

    data: the user's dataset folder, or None for the bundled `dataset`/`split`.
    epsilons: L-infinity budgets in [0, 1] pixel units. steps/alpha: iterative attacks
    (alpha None means eps/4). limit: audit only the first `limit` images.
    """

    out_dir: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    data: Path | None = None
    dataset: str = "nuclei"
    split: str = "test"
    size: int = 128
    num_classes: int = 1  # 1: binary (one sigmoid logit); >1: softmax over label-map masks
    # What the model does: "auto" (binary when num_classes is 1, else multiclass), "binary",
    # "multiclass", "multilabel" or "classification" (logits (N, K) on image patches).
    task: str = "auto"
    patch: int = 32  # classification: side of the labelled patches cut from the masks
    stride: int = 32  # classification: stride between patches
    limit: int | None = None
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    losses: tuple[str, ...] = DEFAULT_LOSSES
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS
    steps: int = 10
    alpha: float | None = None
    engines: tuple[str, ...] = DEFAULT_ENGINES
    engines_dir: Path | None = None  # engines built earlier by `segshield export`
    # engines built outside segshield, audited as they are (engines/external.py): .onnx
    # (ONNX Runtime) or .engine/.plan (TensorRT); reported as "file:<stem>"
    engine_files: tuple[Path, ...] = ()
    calibration_method: str = "minmax"  # static INT8: minmax | entropy | percentile
    calibration_data: Path | None = None  # INT8 calibration images (default: bundled train)
    int8_search: str = "auto"  # auto: search INT8 recipes when the first one is not healthy
    bench: bool = True  # measure engine latency into the report
    bench_batch_sizes: tuple[int, ...] = (1, 8)
    fooled_threshold: float = 0.2  # per-image attack success that counts an image as fooled
    batch_size: int = 8
    seed: int = 0
    threshold: float = 0.5
    # FP32 ONNX export check: |ORT - torch| <= parity_atol + parity_rtol * max|source logit|
    parity_atol: float = 1e-4
    parity_rtol: float = 1e-5
    # engine health from clean mask agreement with the source (engines/health.py)
    health_ok_min: float = 0.97
    health_failed_below: float = 0.80
    parity_images: int = 64  # images the build-time probability parity uses (health: all)
    opset: int = 18
    target: str = "empty"  # targeted attacks: empty | other | shift:DY,DX | scale:F | file:PATH
    asma_steps: int = 300
    asma_tau: float = 1e-5  # ASMA step scale; the paper's 1e-7 needs ~2500 steps here
    asma_beta: float = 1e-4  # ASMA multiplier growth
    n_boot: int = 1000  # bootstrap resamples for confidence intervals (0: none)
    panels: int = 2  # image panels of the worst-hit images per cell (0: none)
    # Where the source model and the attacks run: cpu, cuda, cuda:N or auto (cuda when there).
    device: str = "cpu"
    channels_last: bool = False  # NHWC memory format for the source model and its inputs
    engine_cache: bool = True  # reuse engines built by earlier audits (engines/cache.py)
    engine_cache_dir: Path | None = None  # None: $SEGSHIELD_CACHE_DIR or ~/.cache/segshield
    resume: bool = True  # reuse the finished cells of an interrupted audit of this config
    sea_members: tuple[str, ...] = DEFAULT_SEA_MEMBERS  # "attack:loss" ("*": the cell's loss)
    # gradient-masking / weak-evaluation checks (audits/checks.py) on this many images
    checks: bool = True
    probe_images: int = 16
    # randomized-smoothing certification (audits/certify.py); off unless asked for
    certify: bool = False
    certify_sigma: float = 0.25
    certify_n0: int = 10
    certify_n: int = 100
    certify_alpha: float = 0.001
    # "bonferroni": a radius per pixel; "holm": the paper's step-down test per radius
    certify_correction: Literal["bonferroni", "holm"] = "bonferroni"
    certify_radii: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5)
    certify_images: int | None = 16  # the first images (None: all)
    # MLflow tracking of the finished audit (segshield.tracking); run control, not measured
    mlflow: bool = False
    mlflow_tracking_uri: str | None = None  # None: MLflow's default ($MLFLOW_TRACKING_URI)
    mlflow_experiment: str = "segshield"
    mlflow_log_engines: bool = False  # also log the built engine files as artifacts
    # Medical data (segshield.data): how raw values become [0, 1] ("auto": 8-bit by dtype,
    # CT by a soft-tissue window, else percentiles), and how volumes reach the model
    intensity: str = "auto"  # auto | dtype | window | percentile | minmax | none
    window: str | None = None  # CT window "CENTER,WIDTH" in HU, or a preset (ct-lung, ...)
    percentiles: str | None = None  # "LOW,HIGH" for percentile scaling (default 0.5,99.5)
    channels: int | None = None  # image channels; None: the model's first layer decides
    volume_mode: str = "slices"  # volumes: slices (2-D model) | volumes | patches (3-D model)
    slice_axis: str = "axial"  # slices: axial | coronal | sagittal | 0 | 1 | 2
    keep_empty_slices: bool = False  # slices: also audit slices without foreground
    volume_size: tuple[int, ...] = (32, 64, 64)  # volumes/patches: D, H, W
    # multi-label from a label map: "name=1,2,3" per label (a voxel belongs to every label
    # whose values contain it, e.g. BraTS's nested tumour regions)
    label_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Engine files given as strings, or one path alone (Python callers), become Paths.
        files = self.engine_files
        files = (files,) if isinstance(files, (str, Path)) else files
        object.__setattr__(self, "engine_files", tuple(Path(p) for p in files))
        problems = []
        if not self.attacks:
            problems.append("at least one attack is needed")
        if not self.losses:
            problems.append("at least one loss is needed")
        if not self.epsilons or any(not 0.0 <= e <= 1.0 for e in self.epsilons):
            problems.append(f"epsilons must be in [0, 1], got {list(self.epsilons)}")
        try:
            resolved = resolve_engine_names(self.engines)
        except ValueError as exc:
            problems.append(str(exc))
            resolved = list(self.engines)
        if "pytorch" not in resolved:
            problems.append("the pytorch engine (the attacked source model) is always needed")
        for name, low in (("steps", 1), ("batch_size", 1), ("size", 8)):
            if getattr(self, name) < low:
                problems.append(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not 0.0 < self.fooled_threshold <= 1.0:
            problems.append(f"fooled_threshold must be in (0, 1], got {self.fooled_threshold}")
        if not self.bench_batch_sizes or min(self.bench_batch_sizes) < 1:
            problems.append("bench_batch_sizes must be >= 1")
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        for name in ("n_boot", "panels"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if self.task != "auto" and self.task not in TASK_KINDS:
            problems.append(
                f"task must be auto or one of {', '.join(TASK_KINDS)}, got {self.task!r}"
            )
        if not 0.0 <= self.health_failed_below <= self.health_ok_min <= 1.0:
            problems.append(
                "health thresholds need 0 <= health_failed_below <= health_ok_min <= 1, got "
                f"{self.health_failed_below} and {self.health_ok_min}"
            )
        if self.parity_atol < 0 or self.parity_rtol < 0 or self.parity_images < 1:
            problems.append("parity_atol and parity_rtol must be >= 0, parity_images >= 1")
        if self.int8_search not in ("auto", "off"):
            problems.append(f"int8_search must be auto or off, got {self.int8_search!r}")
        if not _DEVICE.fullmatch(self.device):
            problems.append(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        if self.patch < 8 or self.stride < 1:
            problems.append("patch must be >= 8 and stride >= 1")
        problems += _engine_file_problems(self)
        problems += _data_problems(self)
        problems += _evaluation_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def task_kind(self) -> TaskKind:
        """The task, with "auto" resolved from num_classes."""
        if self.task != "auto":
            return TaskKind(self.task)
        if self.label_groups:
            return TaskKind.MULTILABEL
        return TaskKind.BINARY if self.num_classes == 1 else TaskKind.MULTICLASS

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings, tuples as lists."""
        raw = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        raw["out_dir"] = str(self.out_dir)
        for key in ("data", "engines_dir", "calibration_data", "engine_cache_dir"):
            raw[key] = None if getattr(self, key) is None else str(getattr(self, key))
        raw["engine_files"] = [str(p) for p in self.engine_files]
        raw["model"] = {
            **asdict(self.model),
            "weights": None if self.model.weights is None else str(self.model.weights),
        }
        return raw


def _data_problems(config: AuditConfig) -> list[str]:
    """The medical-data settings (their values are parsed by segshield.data when loading)."""
    from segshield.data import VOLUME_MODES, IntensityMode

    problems = []
    if config.intensity not in tuple(IntensityMode):
        modes = ", ".join(IntensityMode)
        problems.append(f"intensity must be one of {modes}, got {config.intensity!r}")
    if config.volume_mode not in VOLUME_MODES:
        modes = ", ".join(VOLUME_MODES)
        problems.append(f"volume_mode must be one of {modes}, got {config.volume_mode!r}")
    if len(config.volume_size) != 3 or min(config.volume_size) < 4:
        problems.append(f"volume_size must be D,H,W each >= 4, got {list(config.volume_size)}")
    if config.channels is not None and config.channels < 1:
        problems.append(f"channels must be >= 1, got {config.channels}")
    for group in config.label_groups:
        name, _, values = str(group).partition("=")
        if not name.strip() or not all(v.strip().isdigit() for v in values.split(",")):
            problems.append(f"label group {group!r} must look like name=1,2,3")
    if config.label_groups and config.task not in ("auto", "multilabel"):
        problems.append(f"label_groups make a multi-label task, not {config.task!r}")
    return problems


def _engine_file_problems(config: AuditConfig) -> list[str]:
    """Engine files need a known suffix and may be listed once (existence is checked when
    they are loaded, with the rest of the file)."""
    problems = []
    for path in config.engine_files:
        if path.suffix.lower() not in ENGINE_FILE_SUFFIXES:
            problems.append(
                f"engine_files: {path} is not an engine file; expected a .onnx (ONNX Runtime) "
                "or .engine/.plan (TensorRT) file"
            )
    seen = [p.resolve() for p in config.engine_files]
    twice = sorted({str(p) for p in seen if seen.count(p) > 1})
    if twice:
        problems.append(f"engine_files lists {', '.join(twice)} more than once")
    return problems


def _evaluation_problems(config: AuditConfig) -> list[str]:
    """The ensemble, checks and certification settings."""
    problems = []
    if not config.sea_members or any(not str(m).strip() for m in config.sea_members):
        problems.append("sea_members needs at least one ATTACK[:LOSS]")
    if config.probe_images < 1:
        problems.append(f"probe_images must be >= 1, got {config.probe_images}")
    if not (config.certify_sigma > 0 and config.certify_n >= 1 and config.certify_n0 >= 1):
        problems.append("certify_sigma must be > 0, certify_n and certify_n0 >= 1")
    if not 0.0 < config.certify_alpha < 1.0:
        problems.append(f"certify_alpha must be in (0, 1), got {config.certify_alpha}")
    if config.certify_correction not in ("bonferroni", "holm"):
        problems.append(
            f"certify_correction must be bonferroni or holm, got {config.certify_correction!r}"
        )
    if not config.certify_radii or min(config.certify_radii) < 0:
        problems.append("certify_radii must be >= 0")
    if config.certify_images is not None and config.certify_images < 1:
        problems.append(f"certify_images must be >= 1, got {config.certify_images}")
    if not str(config.mlflow_experiment).strip():
        problems.append("mlflow_experiment must not be empty")
    if config.mlflow_tracking_uri is not None and not str(config.mlflow_tracking_uri).strip():
        problems.append("mlflow_tracking_uri must not be empty (leave it unset for the default)")
    return problems
