"""One engine x one input set -> a typed evaluation, plus what later comparisons need
(predictions and per-image, per-class counts, kept in memory only)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from segshield.engines import infer_batched
from segshield.enums import Status
from segshield.metrics import ConfusionCounts, bootstrap_stat
from segshield.results import EngineEval, Interval
from segshield.tasks import Task, metrics_record, per_image_record

from .engines import AuditEngine

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """Per-engine predictions and counts of one input set (not written to the report)."""

    preds: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, ConfusionCounts] = field(default_factory=dict)


def evaluate_engine(
    engine: AuditEngine,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    batch_size: int,
    boot: np.ndarray | None,
) -> tuple[EngineEval, np.ndarray | None, ConfusionCounts | None]:
    """Run one engine over every image and score it; a failure is recorded, not raised.

    Returns the evaluation, the predictions and the per-image counts (None on failure).
    boot: shared bootstrap indices (n_boot, N) for the task's intervals.
    """
    if engine.runner is None:
        # Not run: UNAVAILABLE (this machine cannot) or ERROR (its build failed), as built.
        status = Status.UNAVAILABLE if engine.record.status == Status.UNAVAILABLE else Status.ERROR
        reason = f"engine {engine.record.status}: {engine.record.reason}"
        return EngineEval(engine.name, status, reason), None, None
    try:
        logits = infer_batched(engine.runner, images, batch_size)
        acc = task.accumulator()
        acc.update(logits, labels)
        result, counts = acc.result(), acc.counts()
    except Exception as exc:  # one engine failing must not lose the others
        log.exception("engine %s failed", engine.name)
        return EngineEval(engine.name, Status.ERROR, f"{type(exc).__name__}: {exc}"), None, None
    preds = acc.predictions()
    per_image = per_image_record(result, counts)
    per_image.pred = task.image_predictions(preds)
    ev = EngineEval(engine.name, metrics=metrics_record(result), per_image=per_image)
    if boot is not None:
        ev.ci = {
            name: Interval(**bootstrap_stat(counts, stat, indices=boot))
            for name, stat in task.statistics().items()
        }
    return ev, preds, counts


def evaluate_engines(
    engines: list[AuditEngine],
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    batch_size: int,
    boot: np.ndarray | None,
) -> tuple[dict[str, EngineEval], Outputs]:
    """Evaluate every engine on the same inputs, in engine order."""
    evals: dict[str, EngineEval] = {}
    outputs = Outputs()
    for engine in engines:
        ev, pred, counts = evaluate_engine(engine, images, labels, task, batch_size, boot)
        evals[engine.name] = ev
        if pred is not None and counts is not None:
            outputs.preds[engine.name] = pred
            outputs.counts[engine.name] = counts
    return evals, outputs
