"""CSV rendering of an audit report: one row per (clean or cell) x engine, for spreadsheets;
then the worst case per ε x engine (attack "worst_case", loss "*") and certification per
engine x radius (attack "certified", epsilon = the L2 radius, its own metric columns).

Values are written as stored (fractions in [0, 1], epsilon in pixel units, full precision);
a missing value is an empty field; a text field that would start a spreadsheet formula
(``= + - @``, tab, newline) starts with an apostrophe. The header is always present. The
cell's attack loss is the column ``attack_loss``: ``loss`` is the evaluation metric of
METRIC_FIELDS, named as in gate policies.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from segshield.results import (
    CERTIFIED,
    CERTIFIED_METRICS,
    CLEAN,
    EVAL_METRICS,
    PERTURBATION_METRICS,
    WORST_CASE,
    AuditCell,
    AuditReport,
    EngineEval,
    Status,
    certified_rows,
)

CSV_COLUMNS: tuple[str, ...] = (
    "cell_id",
    "attack",
    "attack_loss",
    "epsilon",
    "engine",
    "engine_health",
    "status",
    "error",
    *EVAL_METRICS,
    *PERTURBATION_METRICS,
    *CERTIFIED_METRICS,
)


# A text field starting with one of these is a formula to a spreadsheet (CSV injection):
# such fields get a leading apostrophe, which spreadsheets show as text (OWASP's advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _value(value: Any) -> str:
    """A stored value as CSV text: floats at full precision (repr), missing as empty. Text
    (names, error messages) that a spreadsheet would run as a formula is prefixed with an
    apostrophe; quoting of commas, quotes and newlines is the csv module's."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _eval_fields(ev: EngineEval | None) -> dict[str, Any]:
    if ev is None:
        return {}
    out: dict[str, Any] = {name: ev.value(name) for name in EVAL_METRICS}
    out.update(engine=ev.engine, status=str(ev.status), error=ev.error)
    return out


def _rows(report: AuditReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    health = {e.name: (e.health or {}).get("status") for e in report.engines}
    clean_base = {"cell_id": CLEAN, "attack": CLEAN, "attack_loss": None, "epsilon": 0.0}
    for name, ev in report.clean.items():
        rows.append({**clean_base, **_eval_fields(ev), "engine": name})
    for cell in report.cells:
        rows += _cell_rows(cell)
    rows += _worst_case_rows(report) + _certified_rows(report)
    for row in rows:
        row["engine_health"] = health.get(row.get("engine"))
    return rows


def _cell_rows(cell: AuditCell) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "cell_id": cell.id,
        "attack": cell.attack,
        "attack_loss": cell.loss,
        "epsilon": cell.epsilon,
    }
    base.update({k: getattr(cell.perturbation, k, None) for k in PERTURBATION_METRICS})
    if not cell.engines:
        # A cell that failed before any engine ran still gets its row.
        return [{**base, "engine": None, "status": str(cell.status), "error": cell.error}]
    rows = []
    for name, ev in cell.engines.items():
        row = {**base, **_eval_fields(ev), "engine": name}
        if cell.status != Status.OK:
            row["status"], row["error"] = str(cell.status), cell.error or ev.error
        rows.append(row)
    return rows


def _worst_case_rows(report: AuditReport) -> list[dict[str, Any]]:
    """The worst case over every attack and loss per ε and engine (loss "*", as the gate's
    selector reads it); no perturbation columns: its images come from several cells."""
    rows: list[dict[str, Any]] = []
    for wc in report.evaluation.worst_case if report.evaluation is not None else []:
        base = {"cell_id": wc.id, "attack": WORST_CASE, "attack_loss": "*", "epsilon": wc.epsilon}
        rows += [{**base, **_eval_fields(ev), "engine": n} for n, ev in wc.engines.items()]
    return rows


def _certified_rows(report: AuditReport) -> list[dict[str, Any]]:
    """Certification per engine and radius (epsilon = the L2 radius, as in gate selectors);
    an engine whose certification failed, or the whole section, as an error row."""
    section = report.certified
    if not isinstance(section, dict):
        return []
    base = {"attack": CERTIFIED, "attack_loss": None}
    if section.get("error"):
        return [{**base, "cell_id": CERTIFIED, "status": "error", "error": section["error"]}]
    values = {(e, r): v for e, r, v in certified_rows(section)}
    rows: list[dict[str, Any]] = []
    for name, rec in (section.get("engines") or {}).items():
        if isinstance(rec, dict) and rec.get("error"):
            rows.append({**base, "cell_id": CERTIFIED, "engine": name, "status": "error",
                         "error": rec["error"]})  # fmt: skip
            continue
        rows += [
            {**base, **v, "cell_id": AuditCell.make_id(CERTIFIED, "*", r), "epsilon": r,
             "engine": name, "status": str(Status.OK)}
            for (e, r), v in values.items()
            if e == name
        ]  # fmt: skip
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
