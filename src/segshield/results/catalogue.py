"""The gateable metrics, generated from the result types so that a new metric is gateable
the day it exists: every float field of :class:`Metrics`, every comparison of
:class:`EngineEval`, the bootstrap bounds of every metric that can carry an interval, and the
perturbation's float fields (per cell, not per engine)."""

from __future__ import annotations

import typing
from dataclasses import fields

from segshield.results.types import COMPARISONS, Metrics, Perturbation

# Metrics that the audit attaches bootstrap intervals to (by task; see audits/tasks).
CI_METRICS = ("dice", "iou", "accuracy", "attack_success")


def _float_fields(cls: type) -> tuple[str, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(f.name for f in fields(cls) if hints[f.name] == (float | None))


# threshold is a setting recorded with the metrics, not a measurement to gate on.
METRIC_FIELDS: tuple[str, ...] = tuple(n for n in _float_fields(Metrics) if n != "threshold")
CI_BOUNDS: tuple[str, ...] = tuple(f"{m}_ci_{side}" for m in CI_METRICS for side in ("low", "high"))
# Read from one engine's evaluation (EngineEval.value).
EVAL_METRICS: tuple[str, ...] = (*METRIC_FIELDS, *COMPARISONS, *CI_BOUNDS)
# Read from the cell (the perturbation is the same for every engine).
PERTURBATION_METRICS: tuple[str, ...] = _float_fields(Perturbation)
# Read from the certified section (attack "certified", epsilon = the L2 radius).
CERTIFIED_METRICS: tuple[str, ...] = (
    "certified_dice",
    "certified_share",
    "certified_any_share",
    "abstain_share",
)
GATE_METRICS: tuple[str, ...] = (*EVAL_METRICS, *PERTURBATION_METRICS, *CERTIFIED_METRICS)
