"""Audit configuration: one frozen object built by the CLI (or by users in Python)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from segshield.engines.specs import ENGINE_SPECS, resolve_engine_names
from segshield.models import ModelSpec

ENGINES = tuple(ENGINE_SPECS)

DEFAULT_EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
# Seed advunet sweeps FGSM over 0.1 .. 0.9; offered with --epsilons advunet.
ADVUNET_EPSILONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_ATTACKS = ("fgsm", "bim", "pgd")
DEFAULT_LOSSES = ("bce",)
# The CPU engine matrix audited by default; GPU engines (ort-cuda, ort-trt*, tensorrt-*,
# aoti-cuda-*) are listed in segshield.engines.ENGINE_SPECS and reported unavailable on a CPU.
DEFAULT_ENGINES = ("pytorch", "ort-fp32", "ort-fp16", "ort-int8", "aoti-fp32")


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
    limit: int | None = None
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    losses: tuple[str, ...] = DEFAULT_LOSSES
    epsilons: tuple[float, ...] = DEFAULT_EPSILONS
    steps: int = 10
    alpha: float | None = None
    engines: tuple[str, ...] = DEFAULT_ENGINES
    engines_dir: Path | None = None  # engines built earlier by `segshield export`
    calibration_method: str = "minmax"  # static INT8: minmax | entropy | percentile
    calibration_data: Path | None = None  # INT8 calibration images (default: bundled train)
    bench: bool = True  # measure engine latency into the report
    bench_batch_sizes: tuple[int, ...] = (1, 8)
    fooled_threshold: float = 0.2  # per-image attack success that counts an image as fooled
    batch_size: int = 8
    seed: int = 0
    threshold: float = 0.5
    parity_atol: float = 1e-4
    opset: int = 18
    target: str = "empty"  # targeted attacks: empty | other | shift:DY,DX | scale:F | file:PATH
    asma_steps: int = 300
    asma_tau: float = 1e-5  # ASMA step scale; the paper's 1e-7 needs ~2500 steps here
    asma_beta: float = 1e-4  # ASMA multiplier growth
    n_boot: int = 1000  # bootstrap resamples for confidence intervals (0: none)
    panels: int = 2  # image panels of the worst-hit images per cell (0: none)

    def __post_init__(self) -> None:
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
        if self.steps < 1 or self.batch_size < 1 or self.size < 8:
            problems.append("steps and batch_size must be >= 1 and size >= 8")
        if not 0.0 < self.fooled_threshold <= 1.0:
            problems.append(f"fooled_threshold must be in (0, 1], got {self.fooled_threshold}")
        if not self.bench_batch_sizes or min(self.bench_batch_sizes) < 1:
            problems.append("bench_batch_sizes must be >= 1")
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        if self.n_boot < 0 or self.panels < 0:
            problems.append("n_boot and panels must be >= 0")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        raw = asdict(self)
        raw["out_dir"] = str(self.out_dir)
        for key in ("data", "engines_dir", "calibration_data"):
            raw[key] = None if getattr(self, key) is None else str(getattr(self, key))
        raw["model"] = {
            **asdict(self.model),
            "weights": None if self.model.weights is None else str(self.model.weights),
        }
        return raw
