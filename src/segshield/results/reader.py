"""Read report.json of any supported schema into the typed :class:`AuditReport`.

Schema 2 (current) carries a ``task``; schema 1 segmentation reports are converted on the way
in (their task is inferred from ``config.num_classes``), so older reports still gate and
render. Anything else is refused with a message naming what is wrong.
"""

from __future__ import annotations

from typing import Any

from segshield.engines.records import EngineRecord
from segshield.enums import TaskKind
from segshield.errors import ReportError
from segshield.results.evaluation import Evaluation
from segshield.results.types import (
    REPORT_KIND,
    SCHEMA_VERSION,
    AuditCell,
    AuditReport,
    EngineEval,
)

READABLE_VERSIONS = (1, SCHEMA_VERSION)


def _task(raw: dict) -> TaskKind:
    if "task" in raw:
        return TaskKind(raw["task"])
    num_classes = (raw.get("config") or {}).get("num_classes", 1) or 1
    return TaskKind.MULTICLASS if num_classes > 1 else TaskKind.BINARY


def report_from_dict(raw: Any) -> AuditReport:
    """The typed report from its JSON dict (schema 1 or 2).

    Raises:
        ReportError: not a segshield audit report, an unsupported schema_version, or a
            malformed body (the missing key or bad value is named).
    """
    if not isinstance(raw, dict) or raw.get("kind") != REPORT_KIND:
        raise ReportError(f"not a segshield audit report (its 'kind' is not {REPORT_KIND})")
    version = raw.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ReportError(
            f"report schema_version {version!r} is not supported (this segshield reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    try:
        report = AuditReport(
            provenance=raw["provenance"],
            config=raw["config"],
            model=raw["model"],
            dataset=raw["dataset"],
            task=_task(raw),
            engines=[EngineRecord.from_dict(e) for e in raw.get("engines", [])],
            clean={k: EngineEval.from_dict(v) for k, v in raw.get("clean", {}).items()},
            cells=[AuditCell.from_dict(c) for c in raw.get("cells", [])],
            verdict=raw.get("verdict"),
            latency=raw.get("latency"),
            build=raw.get("build"),
            skipped=list(raw.get("skipped") or []),
            evaluation=Evaluation.from_dict(raw.get("evaluation")),
            certified=raw.get("certified"),
            integrity=raw.get("integrity"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportError(f"malformed audit report: {exc!r}") from exc
    if version == 1:
        _from_v1(report)
    return report


def _from_v1(report: AuditReport) -> None:
    """Schema 1 did not record the activation: a multi-class report's was softmax."""
    if report.task != TaskKind.MULTICLASS:
        return
    evals = [*report.clean.values(), *(ev for c in report.cells for ev in c.engines.values())]
    for ev in evals:
        if ev.metrics is not None:
            ev.metrics.activation = "softmax"
