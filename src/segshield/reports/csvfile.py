"""CSV rendering of an audit report: one row per (clean or cell) x engine, for spreadsheets.

Values are written as stored (fractions in [0, 1], epsilon in pixel units, full precision);
a missing value is an empty field. The header is always present. The cell's attack loss is
the column ``attack_loss``: ``loss`` is the evaluation metric of SEG_METRICS, named as in
gate policies.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from segshield.audits.results import CLEAN, SEG_METRICS, AuditCell, AuditReport, EngineEval

CSV_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "attack",
    "attack_loss",
    "epsilon",
    "engine",
    "status",
    "error",
    *SEG_METRICS,
    "attack_success",
    "disagreement",
    "dice_gap",
    "dice_ci_low",
    "dice_ci_high",
    "ssim_mean",
    "linf_max",
    "l2_mean",
)


def _value(value: Any) -> str:
    """A stored value as CSV text: floats at full precision (repr), missing as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _eval_fields(ev: EngineEval | None) -> dict[str, Any]:
    if ev is None:
        return {}
    metrics = ev.metrics or {}
    ci = (ev.ci or {}).get("dice")
    ci = ci if isinstance(ci, dict) else {}
    out: dict[str, Any] = {key: metrics.get(key) for key in SEG_METRICS}
    out.update(
        engine=ev.engine,
        status=ev.status,
        error=ev.error,
        attack_success=ev.attack_success,
        disagreement=ev.disagreement,
        dice_gap=ev.dice_gap,
        dice_ci_low=ci.get("low"),
        dice_ci_high=ci.get("high"),
    )
    return out


def _rows(report: AuditReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    clean_base = {"cell_id": CLEAN, "attack": CLEAN, "attack_loss": None, "epsilon": 0.0}
    for name, ev in report.clean.items():
        rows.append({**clean_base, **_eval_fields(ev), "engine": name})
    for cell in report.cells:
        rows += _cell_rows(cell)
    return rows


def _cell_rows(cell: AuditCell) -> list[dict[str, Any]]:
    pert = cell.perturbation or {}
    base = {
        "cell_id": cell.id,
        "attack": cell.attack,
        "attack_loss": cell.loss,
        "epsilon": cell.epsilon,
        "ssim_mean": pert.get("ssim_mean"),
        "linf_max": pert.get("linf_max"),
        "l2_mean": pert.get("l2_mean"),
    }
    if not cell.engines:
        # A cell that failed before any engine ran still gets its row.
        return [{**base, "engine": None, "status": cell.status, "error": cell.error}]
    rows = []
    for name, ev in cell.engines.items():
        row = {**base, **_eval_fields(ev), "engine": name}
        if cell.status != "ok":
            row["status"], row["error"] = cell.status, cell.error or ev.error
        rows.append(row)
    return rows


def render_csv(report: AuditReport) -> str:
    """The report as CSV text (columns `CSV_COLUMNS`, ``\\n`` line ends); write it with
    ``Path.write_text`` or a file opened with ``newline=""``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _rows(report):
        writer.writerow({key: _value(row.get(key)) for key in CSV_COLUMNS})
    return buffer.getvalue()
