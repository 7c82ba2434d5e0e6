"""The engines one audit runs: built from the source model, or loaded from an earlier
`segshield export` folder. An engine that cannot be built or run here is kept with its
reason; it never stops the audit."""

from __future__ import annotations

from dataclasses import dataclass

from segshield.engines import (
    ENGINE_SPECS,
    BuildOptions,
    BuiltEngine,
    EngineRecord,
    Runner,
    TorchRunner,
    build_engines,
    remeasure_parity,
    resolve_engine_names,
    runners_from_manifest,
    write_manifest,
)
from segshield.enums import Status
from segshield.errors import SegShieldError
from segshield.models import LoadedModel
from segshield.results import SOURCE_ENGINE
from segshield.tasks import Task

from .config import AuditConfig
from .inputs import AuditData, calibration_images

_NO_CALIBRATION = (
    "static INT8 needs calibration images from the training data: pass --calibration-data "
    "(the audited images are never used for calibration)"
)


@dataclass
class AuditEngine:
    """One engine of the audit: its record (as the report stores it) and its runner (None
    unless it can run)."""

    record: EngineRecord
    runner: Runner | None

    @property
    def name(self) -> str:
        return self.record.name


def _engine(built: BuiltEngine, config: AuditConfig) -> AuditEngine:
    return AuditEngine(built.record.relative_to(config.out_dir), built.runner if built.ok else None)


def parity_sample(config: AuditConfig, data: AuditData):
    """The audited images build-time parity is measured on (the first parity_images; the
    engine health uses every audited image)."""
    return data.images[: max(2, min(len(data), config.parity_images))]


def _from_dir(
    config: AuditConfig, loaded: LoadedModel, names: list[str], data: AuditData, task: Task
) -> tuple[list, dict]:
    assert config.engines_dir is not None
    others = [n for n in names if n != SOURCE_ENGINE]
    try:
        built = runners_from_manifest(config.engines_dir, loaded.module, names=others)
    except ValueError as exc:
        raise SegShieldError(f"--engines-dir {config.engines_dir}: {exc}") from exc
    # Matching hashes prove the files are the ones exported, not that they compute the model:
    # parity is measured again on this audit's images (health follows from the clean run).
    remeasure_parity(
        built, loaded.module, parity_sample(config, data),
        threshold=config.threshold, activation=str(task.activation),
    )  # fmt: skip
    source = AuditEngine(
        EngineRecord(SOURCE_ENGINE, "pytorch", "fp32", device="cpu", providers=["cpu"]),
        TorchRunner(loaded.module),
    )
    info = built[0].info.to_dict() if built and built[0].info else {}
    return [source, *(_engine(b, config) for b in built)], {
        "engines_dir": str(config.engines_dir),
        **info,
    }


def build_options(config: AuditConfig, task: Task, calib_source: str | None) -> BuildOptions:
    """The engine build options an audit's settings ask for."""
    return BuildOptions(
        opset=config.opset,
        export_atol=config.parity_atol,
        export_rtol=config.parity_rtol,
        threshold=config.threshold,
        activation=str(task.activation),
        health_ok_min=config.health_ok_min,
        health_failed_below=config.health_failed_below,
        calibration_method=config.calibration_method,
        calibration_source=calib_source or None,
        int8_search=config.int8_search,
    )


def audit_engines(
    config: AuditConfig, loaded: LoadedModel, data: AuditData, task: Task
) -> tuple[list[AuditEngine], dict]:
    """Build (or load from config.engines_dir) every requested engine, in the requested
    order; returns the engines and the build facts for the report."""
    names = resolve_engine_names(config.engines)
    if config.engines_dir is not None:
        return _from_dir(config, loaded, names, data, task)
    calib, calib_source = calibration_images(config, names)
    needs_calib = {n for n in names if ENGINE_SPECS[n].precision == "int8"}
    skipped = needs_calib if calib is None else set()
    built = build_engines(
        [n for n in names if n not in skipped],
        loaded.module,
        calib,
        config.out_dir / "engines",
        sample=parity_sample(config, data),
        options=build_options(config, task, calib_source),
    )
    by_name = {b.name: b for b in built}
    engines = []
    for n in names:
        if n in skipped:
            spec = ENGINE_SPECS[n]
            record = EngineRecord(n, spec.kind, spec.precision, spec.device)
            record.status, record.reason = Status.UNAVAILABLE, _NO_CALIBRATION
            engines.append(AuditEngine(record, None))
        else:
            engines.append(_engine(by_name[n], config))
    if built:
        write_manifest(built, config.out_dir / "engines")
    info = built[0].info.to_dict() if built and built[0].info else {}
    return engines, info
