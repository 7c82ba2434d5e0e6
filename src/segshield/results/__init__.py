"""Typed, versioned audit results (schema 2; schema 1 is read and converted), and the
catalogue of gateable metrics generated from them. Light: no torch import."""

from __future__ import annotations

from segshield.enums import Status, TaskKind
from segshield.results.catalogue import (
    CI_BOUNDS,
    CI_METRICS,
    EVAL_METRICS,
    GATE_METRICS,
    METRIC_FIELDS,
    PERTURBATION_METRICS,
)
from segshield.results.comparison import ReleaseComparison, compare_reports
from segshield.results.evaluation import (
    CERTIFIED,
    CERTIFIED_METRICS,
    WORST_CASE,
    Evaluation,
    WorstCase,
    certified_rows,
)
from segshield.results.reader import READABLE_VERSIONS, report_from_dict
from segshield.results.types import (
    CLEAN,
    COMPARISONS,
    REPORT_KIND,
    SCHEMA_VERSION,
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    ClassScores,
    EngineEval,
    Interval,
    Metrics,
    Panel,
    PerImage,
    Perturbation,
    PerVolume,
    clean_json,
    from_fields,
)

__all__ = [
    "CERTIFIED",
    "CERTIFIED_METRICS",
    "CI_BOUNDS",
    "CI_METRICS",
    "CLEAN",
    "COMPARISONS",
    "EVAL_METRICS",
    "GATE_METRICS",
    "METRIC_FIELDS",
    "PERTURBATION_METRICS",
    "READABLE_VERSIONS",
    "REPORT_KIND",
    "SCHEMA_VERSION",
    "SOURCE_ENGINE",
    "WORST_CASE",
    "AuditCell",
    "AuditReport",
    "ClassScores",
    "EngineEval",
    "Evaluation",
    "Interval",
    "Metrics",
    "Panel",
    "PerImage",
    "PerVolume",
    "Perturbation",
    "ReleaseComparison",
    "Status",
    "TaskKind",
    "WorstCase",
    "certified_rows",
    "clean_json",
    "compare_reports",
    "from_fields",
    "report_from_dict",
]
