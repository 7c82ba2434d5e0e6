"""Engine health on the audited images: each engine's clean masks against the source's.

Measured on *every* clean audited image from the predictions the clean evaluation already
made (no extra inference), so an engine loaded from `--engines-dir` is re-checked on this
audit's data, never trusted from its manifest. The verdict per engine is
:class:`segshield.enums.Health` (see :mod:`segshield.engines.health` for the thresholds).
"""

from __future__ import annotations

import numpy as np

from segshield.engines.health import EngineHealth, HealthThresholds, assess_health
from segshield.engines.parity import mask_agreement
from segshield.enums import Status, TaskKind
from segshield.results import SOURCE_ENGINE, EngineEval
from segshield.tasks import Task

from .engines import AuditEngine
from .evaluate import Outputs


def _agreement(task: Task, source: np.ndarray, engine: np.ndarray) -> tuple[float, float]:
    """(mask agreement, flip share) of an engine's predictions with the source's."""
    flip = float(np.mean(source != engine)) if source.size else 0.0
    if task.kind == TaskKind.CLASSIFICATION:
        return 1.0 - flip, flip
    return mask_agreement(source, engine, str(task.activation), task.num_classes), flip


def engine_health(
    engine: AuditEngine,
    clean: dict[str, EngineEval],
    outputs: Outputs,
    task: Task,
    thresholds: HealthThresholds,
) -> EngineHealth | None:
    """The health of one engine from the clean run; None when it was not run here
    (unavailable on this machine: no GPU, no TensorRT)."""
    record = engine.record
    n = 0 if outputs.preds.get(SOURCE_ENGINE) is None else len(outputs.preds[SOURCE_ENGINE])
    if record.status == Status.UNAVAILABLE:
        return None
    if record.status == Status.ERROR:
        return assess_health(None, None, n, thresholds, failure=f"build failed: {record.reason}")
    ev = clean.get(engine.name)
    if ev is None or ev.status != Status.OK or engine.name not in outputs.preds:
        why = ev.error if ev is not None else "not evaluated"
        return assess_health(None, None, n, thresholds, failure=f"clean evaluation failed: {why}")
    source = outputs.preds.get(SOURCE_ENGINE)
    if source is None:
        return assess_health(None, None, 0, thresholds, failure="the source was not evaluated")
    agreement, flip = _agreement(task, source, outputs.preds[engine.name])
    return assess_health(agreement, flip, n, thresholds)


def assess_engines(
    engines: list[AuditEngine],
    clean: dict[str, EngineEval],
    outputs: Outputs,
    task: Task,
    thresholds: HealthThresholds,
) -> None:
    """Set ``record.health`` of every engine (the source is the reference: agreement 1)."""
    for engine in engines:
        health = engine_health(engine, clean, outputs, task, thresholds)
        engine.record.health = None if health is None else health.to_dict()


__all__ = ["assess_engines", "engine_health"]
