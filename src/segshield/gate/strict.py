"""`--strict`: what leaves an audit incomplete even when every gate rule holds.

An audit keeps going when a cell fails, an engine does not build or an engine's masks stop
agreeing with the source's, and records it in the report. `strict_problems` lists those
records as one-line reasons, so that `segshield audit --strict` can refuse them (exit 1)
with or without a policy. An engine that is *unavailable* on this machine (no GPU, no
TensorRT) was never tried and is not a problem; nor is an attack skipped because it does
not apply to the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segshield.results import AuditReport, Status


def _health_status(health: Any) -> tuple[str | None, str | None]:
    """(status, reason) of an engine's health record, read defensively: a dict
    (`EngineHealth.to_dict()`), an object with `status`/`reason`, a bare string, or None."""
    if health is None:
        return None, None
    if isinstance(health, Mapping):
        status, reason = health.get("status"), health.get("reason")
    elif isinstance(health, str):
        status, reason = health, None
    else:
        status, reason = getattr(health, "status", None), getattr(health, "reason", None)
    return (None if status is None else str(status).lower()), (
        None if reason is None else str(reason)
    )


def _one_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no reason recorded"


def strict_problems(report: AuditReport) -> list[str]:
    """One line per failed cell, per failed engine evaluation, per engine whose build failed
    and per engine whose health is "failed"; empty when the audit is complete."""
    problems: list[str] = []
    broken: set[str] = set()
    for engine in report.engines:
        if engine.status == Status.ERROR:
            broken.add(engine.name)
            problems.append(f"engine {engine.name} failed to build: {_one_line(engine.reason)}")
            continue
        if engine.status != Status.OK:
            continue  # unavailable here: never tried
        status, reason = _health_status(getattr(engine, "health", None))
        if status == "failed":
            broken.add(engine.name)
            problems.append(f"engine {engine.name} health is failed: {_one_line(reason)}")
    for name, ev in (report.clean or {}).items():
        if ev.status == Status.ERROR and name not in broken:
            problems.append(f"engine {name} failed on the clean images: {_one_line(ev.error)}")
    for cell in report.cells:
        if cell.status == Status.ERROR:
            problems.append(f"cell {cell.id} failed: {_one_line(cell.error)}")
            continue
        for name, ev in cell.engines.items():
            if ev.status == Status.ERROR and name not in broken:
                problems.append(f"cell {cell.id} failed on engine {name}: {_one_line(ev.error)}")
    return problems
