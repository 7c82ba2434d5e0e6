"""One engine x one input set -> a typed evaluation, plus what later comparisons need
(predictions and per-image, per-class counts, kept in memory only)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from segshield.engines import infer_batched
from segshield.enums import Status
from segshield.metrics import Accumulator, ConfusionCounts, bootstrap_stat
from segshield.results import EngineEval, Interval
from segshield.tasks import Task, metrics_record, per_image_record

from .engines import AuditEngine

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """Per-engine predictions and counts of one input set (not written to the report)."""

    preds: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, ConfusionCounts] = field(default_factory=dict)


EngineRun = Accumulator | str | None
"""One engine's accumulated outputs on one set of images, its error message, or None (not
run here: unavailable, or its build failed)."""


def replay(
    engine: AuditEngine,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    batch_size: int,
    spacing: np.ndarray | None = None,
) -> EngineRun:
    """Run one engine over ``images`` (N, C, *spatial) batch by batch into the task's
    accumulator: only counts, losses and predictions are kept, never the whole logits.
    spacing: (N, spatial dims) mm per image for the surface distances (None: the task's)."""
    if engine.runner is None:
        return None
    acc = task.accumulator()
    try:
        for i in range(0, len(images), batch_size):
            logits = infer_batched(engine.runner, images[i : i + batch_size], batch_size)
            sp = None if spacing is None else spacing[i : i + batch_size]
            acc.update(logits, labels[i : i + batch_size], spacing=sp)
    except Exception as exc:  # one engine failing must not lose the others
        log.exception("engine %s failed", engine.name)
        return f"{type(exc).__name__}: {exc}"
    return acc


def replay_engines(
    engines: list[AuditEngine],
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    batch_size: int,
    spacing: np.ndarray | None = None,
) -> dict[str, EngineRun]:
    """:func:`replay` of every engine on the same images, in engine order."""
    return {e.name: replay(e, images, labels, task, batch_size, spacing) for e in engines}


def merge_runs(parts: list[dict[str, EngineRun]]) -> dict[str, EngineRun]:
    """The runs of consecutive shards (in dataset order) as one: an engine that failed on
    any shard failed (its first error is kept)."""
    merged: dict[str, EngineRun] = {}
    for name in parts[0]:
        runs = [p[name] for p in parts]
        errors = [r for r in runs if isinstance(r, str)]
        if errors or any(r is None for r in runs):
            merged[name] = errors[0] if errors else None
            continue
        acc = runs[0]
        assert isinstance(acc, Accumulator)
        for other in runs[1:]:
            acc.merge(other)  # type: ignore[arg-type]
        merged[name] = acc
    return merged


def score_engine(
    engine: AuditEngine, run: EngineRun, task: Task, boot: np.ndarray | None
) -> tuple[EngineEval, np.ndarray | None, ConfusionCounts | None]:
    """One engine's evaluation from its run; a failure is recorded, not raised.

    Returns the evaluation, the predictions and the per-image counts (None on failure).
    boot: shared bootstrap indices (n_boot, N) for the task's intervals.
    """
    if run is None:
        # Not run: UNAVAILABLE (this machine cannot) or ERROR (its build failed), as built.
        status = Status.UNAVAILABLE if engine.record.status == Status.UNAVAILABLE else Status.ERROR
        reason = f"engine {engine.record.status}: {engine.record.reason}"
        return EngineEval(engine.name, status, reason), None, None
    if isinstance(run, str):
        return EngineEval(engine.name, Status.ERROR, run), None, None
    try:
        result, counts = run.result(), run.counts()
    except Exception as exc:
        log.exception("engine %s failed", engine.name)
        return EngineEval(engine.name, Status.ERROR, f"{type(exc).__name__}: {exc}"), None, None
    preds = run.predictions()
    per_image = per_image_record(result, counts)
    per_image.pred = task.image_predictions(preds)
    ev = EngineEval(engine.name, metrics=metrics_record(result), per_image=per_image)
    if boot is not None:
        ev.ci = {
            name: Interval(**bootstrap_stat(counts, stat, indices=boot))
            for name, stat in task.statistics().items()
        }
    return ev, preds, counts


def score_engines(
    engines: list[AuditEngine], runs: dict[str, EngineRun], task: Task, boot: np.ndarray | None
) -> tuple[dict[str, EngineEval], Outputs]:
    """Every engine's evaluation on one input set, in engine order."""
    evals: dict[str, EngineEval] = {}
    outputs = Outputs()
    for engine in engines:
        ev, pred, counts = score_engine(engine, runs[engine.name], task, boot)
        evals[engine.name] = ev
        if pred is not None and counts is not None:
            outputs.preds[engine.name] = pred
            outputs.counts[engine.name] = counts
    return evals, outputs


def evaluate_engines(
    engines: list[AuditEngine],
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    batch_size: int,
    boot: np.ndarray | None,
) -> tuple[dict[str, EngineEval], Outputs]:
    """Evaluate every engine on the same inputs (one process: replay, then score)."""
    runs = replay_engines(engines, images, labels, task, batch_size)
    return score_engines(engines, runs, task, boot)
