"""JUnit XML rendering of an audit report, for CI test dashboards (Jenkins, GitLab, GitHub).

With a gate verdict: one ``<testsuite>`` of the policy, one ``<testcase>`` per rule, a failed
rule carrying ``<failure type="GateRuleFailed">`` with the measured worst value, the threshold
and where it was measured (the policy's engine-health check is one of them). Without a
verdict: one ``<testsuite>`` of the audit itself, first one ``<testcase>`` per engine health
(a failed engine carrying ``<failure type="health">``), then one per clean evaluation and per
cell, an errored one carrying ``<error>``, then the worst case per ε and certification per
engine. Each gradient-masking warning is one more ``<testcase>``: a ``<failure
type="EvaluationWarning">`` when the verdict failed the policy's evaluation_warnings outcome,
else a passing case with the message. The shape is the common Jenkins/Ant ``junit-10.xsd``;
values are formatted, never computed.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from segshield.reports.format import MISSING, format_percent
from segshield.results import AuditCell, AuditReport, EngineEval, Status, certified_rows

GATE_CLASSNAME = "segshield.gate"
AUDIT_CLASSNAME = "segshield.audit"
EVALUATION_CLASSNAME = "segshield.evaluation"
FAILURE_TYPE = "GateRuleFailed"
ERROR_TYPE = "AuditCellError"
WARNING_TYPE = "EvaluationWarning"
CERTIFY_ERROR_TYPE = "CertificationError"

# Characters XML 1.0 cannot hold (control characters other than tab, newline, return).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MAX_FAILURES_LISTED = 50


def _clean(value: Any) -> str:
    """Text safe for an XML 1.0 document (ElementTree escapes markup, not control chars)."""
    return _INVALID_XML.sub("\N{REPLACEMENT CHARACTER}", "" if value is None else str(value))


def _plain(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else _clean(value)
    if isinstance(value, float) and not math.isfinite(value):
        return MISSING
    return f"{value:.6g}"


def _seconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "0.000"
    return f"{max(float(value), 0.0):.3f}"


def _timestamp(report: AuditReport) -> str | None:
    """The run's time as ISO 8601 in UTC without offset (the form junit-10.xsd consumers expect)."""
    prov = report.provenance or {}
    for key in ("started_at", "finished_at", "started"):
        raw = prov.get(key)
        if not isinstance(raw, str):
            continue
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is not None:
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        return when.strftime("%Y-%m-%dT%H:%M:%S")
    return None


def _suite(name: str, report: AuditReport) -> ET.Element:
    suite = ET.Element("testsuite", {"name": _clean(name)})
    stamp = _timestamp(report)
    if stamp is not None:
        suite.set("timestamp", stamp)
    suite.set("time", _seconds((report.provenance or {}).get("seconds")))
    props = ET.SubElement(suite, "properties")
    prov = report.provenance or {}
    model = report.model or {}
    facts = {
        "segshield": prov.get("segshield") or (prov.get("versions") or {}).get("segshield"),
        "command": prov.get("command"),
        "seed": prov.get("seed"),
        "model": model.get("name") or model.get("source"),
        "dataset": report.dataset.get("name") or report.dataset.get("source"),
        "engines": ", ".join(report.engine_names) or None,
    }
    for key, value in facts.items():
        if value is not None:
            ET.SubElement(props, "property", {"name": key, "value": _clean(value)})
    if not len(props):
        suite.remove(props)
    return suite


def _finish(suite: ET.Element, tests: int, failures: int, errors: int, skipped: int) -> str:
    for key, value in (
        ("tests", tests),
        ("failures", failures),
        ("errors", errors),
        ("skipped", skipped),
    ):
        suite.set(key, str(value))
    root = ET.Element(
        "testsuites",
        {
            "name": "segshield",
            "tests": str(tests),
            "failures": str(failures),
            "errors": str(errors),
            "time": suite.get("time", "0.000"),
        },
    )
    root.append(suite)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def failure_message(outcome: dict) -> str:
    """One line: what was measured against which bound, and where."""
    metric = outcome.get("metric") or "value"
    bound = outcome.get("bound") or "?"
    threshold = _plain(outcome.get("threshold"))
    worst = outcome.get("worst_value")
    where = outcome.get("worst_where")
    if worst is None:
        reason = outcome.get("reason") or "no measurement could be read"
        return f"{metric} could not be verified against threshold {bound} {threshold}: {reason}"
    return f"{metric} measured {_plain(worst)}, threshold {bound} {threshold} at {_plain(where)}"


def _failure_text(outcome: dict) -> str:
    lines = [
        f"rule: {_plain(outcome.get('rule'))}",
        f"metric: {_plain(outcome.get('metric'))}",
        f"bound: {_plain(outcome.get('bound'))} {_plain(outcome.get('threshold'))}",
        f"worst: {_plain(outcome.get('worst_value'))} at {_plain(outcome.get('worst_where'))}",
        f"measurements checked: {_plain(outcome.get('n_checked'))}",
    ]
    if outcome.get("reason"):
        lines.append(f"reason: {_plain(outcome.get('reason'))}")
    failures = [f for f in outcome.get("failures") or [] if isinstance(f, dict)]
    if failures:
        lines.append("failing measurements:")
        for f in failures[:_MAX_FAILURES_LISTED]:
            line = f"  {_plain(f.get('where'))}: {_plain(f.get('value'))}"
            if f.get("reason"):
                line += f" ({_plain(f.get('reason'))})"
            lines.append(line)
        if len(failures) > _MAX_FAILURES_LISTED:
            lines.append(f"  ... and {len(failures) - _MAX_FAILURES_LISTED} more")
    return "\n".join(lines)


def _render_gate(report: AuditReport, verdict: dict) -> str:
    suite = _suite(f"segshield gate: {verdict.get('policy_name') or 'policy'}", report)
    outcomes = [o for o in verdict.get("outcomes") or [] if isinstance(o, dict)]
    failures = 0
    for i, o in enumerate(outcomes):
        name = o.get("rule") or f"rule {i + 1}"
        case = ET.SubElement(
            suite, "testcase", {"classname": GATE_CLASSNAME, "name": _clean(name), "time": "0"}
        )
        if o.get("passed") is True:
            out = ET.SubElement(case, "system-out")
            out.text = (
                f"{_plain(o.get('metric'))} worst {_plain(o.get('worst_value'))} at "
                f"{_plain(o.get('worst_where'))}, threshold {_plain(o.get('bound'))} "
                f"{_plain(o.get('threshold'))}; {_plain(o.get('n_checked'))} checked"
            )
            continue
        failures += 1
        failure = ET.SubElement(
            case, "failure", {"message": _clean(failure_message(o)), "type": FAILURE_TYPE}
        )
        failure.text = _clean(_failure_text(o))
    gated = any(
        o.get("metric") == "evaluation_warnings" and o.get("passed") is not True for o in outcomes
    )
    n_warnings, warned = _warning_cases(suite, report, failing=gated)
    if verdict.get("passed") is not True and failures + warned == 0:
        # A failed verdict must never read as green in CI, even with no failed rule listed.
        case = ET.SubElement(
            suite, "testcase", {"classname": GATE_CLASSNAME, "name": "verdict", "time": "0"}
        )
        ET.SubElement(
            case,
            "failure",
            {"message": "the gate verdict is not PASS", "type": FAILURE_TYPE},
        )
        failures += 1
        outcomes.append({})
    return _finish(suite, len(outcomes) + n_warnings, failures + warned, 0, 0)


def _case(suite: ET.Element, name: str, classname: str = EVALUATION_CLASSNAME) -> ET.Element:
    attrs = {"classname": classname, "name": _clean(name), "time": "0"}
    return ET.SubElement(suite, "testcase", attrs)


def _warning_cases(suite: ET.Element, report: AuditReport, failing: bool) -> tuple[int, int]:
    """One test case per gradient-masking / weak-evaluation warning: a failure only when the
    verdict failed the policy's evaluation_warnings outcome (the warnings then fail the
    release), else a passing case that carries the message. Returns (cases, failures)."""
    warnings = report.evaluation.warnings if report.evaluation is not None else []
    warnings = [w for w in warnings if isinstance(w, dict)]
    for i, w in enumerate(warnings):
        where = ", ".join(
            _plain(w[k]) for k in ("attack", "loss", "engine") if w.get(k) is not None
        )
        name = f"evaluation warning {i + 1}: {w.get('check')}" + (f" ({where})" if where else "")
        case = _case(suite, name)
        message = _clean(w.get("message") or w.get("check"))
        tag, attrs = (
            ("failure", {"message": message, "type": WARNING_TYPE})
            if failing
            else ("system-out", {})
        )
        ET.SubElement(case, tag, attrs).text = message
    return len(warnings), len(warnings) if failing else 0


def _strength_cases(suite: ET.Element, report: AuditReport) -> tuple[int, int]:
    """Without a verdict: the worst case per ε (like a cell) and certification per engine
    (an engine whose certification failed carries an error). Returns (cases, errors)."""
    n = errors = 0
    for wc in report.evaluation.worst_case if report.evaluation is not None else []:
        out = ET.SubElement(_case(suite, wc.id, AUDIT_CLASSNAME), "system-out")
        out.text = _clean(_eval_summary(wc.engines, report.primary_metric))
        n += 1
    certified = report.certified if isinstance(report.certified, dict) else None
    records = (certified or {}).get("engines") or {}
    if certified is not None and certified.get("error"):
        records = {"all engines": certified}
    rows = certified_rows(certified)
    for name, rec in records.items():
        case = _case(suite, f"certified: {name}")
        n += 1
        if isinstance(rec, dict) and rec.get("error"):
            message = _clean(f"certification of {name} failed: {rec['error']}")
            err = ET.SubElement(case, "error", {"message": message, "type": CERTIFY_ERROR_TYPE})
            err.text = message
            errors += 1
            continue
        ET.SubElement(case, "system-out").text = _clean("; ".join(
            f"radius {r:g}: certified Dice {format_percent(v.get('certified_dice'))}"
            for e, r, v in rows if e == name
        ))  # fmt: skip
    return n, errors


def _eval_summary(evals: dict[str, EngineEval], primary: str) -> str:
    label = "Dice" if primary == "dice" else primary.replace("_", " ").capitalize()
    parts = []
    for name, ev in evals.items():
        if ev.status == Status.OK:
            parts.append(f"{name}: {label} {format_percent(ev.value(primary))}")
        else:
            parts.append(f"{name}: {ev.status}")
    return "; ".join(parts) or "no engine evaluated"


def _eval_errors(evals: dict[str, EngineEval]) -> list[str]:
    return [f"{n}: {ev.error or ev.status}" for n, ev in evals.items() if ev.status != Status.OK]


def _render_cells(report: AuditReport) -> str:
    suite = _suite("segshield audit", report)
    items: list[tuple[str, dict[str, EngineEval], AuditCell | None]] = [
        ("clean", report.clean, None)
    ]
    items += [(c.id, c.engines, c) for c in report.cells]
    # Engines whose record is not ok (unavailable here) are left out: the record says why.
    skip = {e.name for e in report.engines if e.status != Status.OK}
    items = [(n, {k: v for k, v in ev.items() if k not in skip}, c) for n, ev, c in items]
    errors = failures = 0
    health = [e for e in report.engines if isinstance(e.health, dict) and e.health]
    for e in health:  # first, as in every format: does each engine compute the model?
        case = ET.SubElement(
            suite, "testcase",
            {"classname": AUDIT_CLASSNAME, "name": _clean(f"engine health: {e.name}"), "time": "0"},
        )  # fmt: skip
        if e.health.get("status") == "failed":
            message = f"engine {e.name} is failed: {e.health.get('reason')}"
            fail = ET.SubElement(case, "failure", {"message": _clean(message), "type": "health"})
            fail.text = _clean(message)
            failures += 1
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _clean(f"{e.health.get('status')}: mask agreement "
                              f"{_plain(e.health.get('mask_dice'))}")  # fmt: skip
    for name, evals, cell in items:
        time = _seconds(cell.seconds) if cell is not None else "0"
        case = ET.SubElement(
            suite, "testcase", {"classname": AUDIT_CLASSNAME, "name": _clean(name), "time": time}
        )
        if cell is not None and cell.status != Status.OK:
            message = f"cell {name} failed: {cell.error or cell.status}"
            err = ET.SubElement(case, "error", {"message": _clean(message), "type": ERROR_TYPE})
            err.text = _clean(cell.error or cell.status)
            errors += 1
            continue
        problems = _eval_errors(evals)
        if problems:
            message = f"{name}: evaluation failed on " + "; ".join(problems)
            err = ET.SubElement(case, "error", {"message": _clean(message), "type": ERROR_TYPE})
            err.text = _clean("\n".join(problems))
            errors += 1
            continue
        out = ET.SubElement(case, "system-out")
        out.text = _clean(_eval_summary(evals, report.primary_metric))
    n_strength, strength_errors = _strength_cases(suite, report)
    n_warnings, _ = _warning_cases(suite, report, failing=False)  # no verdict: nothing gated
    tests = len(items) + len(health) + n_strength + n_warnings
    return _finish(suite, tests, failures, errors + strength_errors, 0)


def render_junit(report: AuditReport) -> str:
    """The report as JUnit XML: gate rules as test cases, or the audit cells when the report
    has no verdict (so CI still shows which cells ran and which errored)."""
    if isinstance(report.verdict, dict):
        return _render_gate(report, report.verdict)
    return _render_cells(report)
