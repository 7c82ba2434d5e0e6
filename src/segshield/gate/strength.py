"""What the gate reads of a report's evaluation-strength sections: the worst case per engine
(``attack = "worst_case"``), certified robustness (``attack = "certified"``, ε = the L2
radius) and the gradient-masking warnings (``[policy] evaluation_warnings = "fail"``).

Both pseudo-attacks are selected only by naming them, like ``"clean"``: ``attack = "*"``
keeps meaning the attack cells, so a policy written before them gates the same values.
"""

from __future__ import annotations

from segshield.gate.rules import Rule
from segshield.results import CERTIFIED, WORST_CASE, AuditCell, AuditReport, EngineEval
from segshield.results.evaluation import certified_rows

__all__ = [
    "Target",
    "certified_measurements",
    "warnings_outcome",
    "worst_case_failures",
    "worst_case_targets",
]

Target = tuple[str, AuditCell | None, dict[str, EngineEval]]
"""(label, the cell or None, the evaluations per engine) one rule reads."""


def worst_case_targets(report: AuditReport, rule: Rule) -> list[Target]:
    """The worst case at each ε the rule selects (its loss selector does not apply: the
    worst case runs over every loss), when the rule names ``worst_case``."""
    if rule.attacks is None or WORST_CASE not in rule.attacks or report.evaluation is None:
        return []
    return [
        (wc.id, None, wc.engines)
        for wc in report.evaluation.worst_case
        if rule.matches_epsilon(wc.epsilon) and not wc.failed
    ]


def worst_case_failures(report: AuditReport, rule: Rule) -> list[tuple[str, str]]:
    """Why a selected worst case cannot be verified: a cell of its ε failed, so the minimum
    would be over fewer attacks than the audit ran."""
    if rule.attacks is None or WORST_CASE not in rule.attacks or report.evaluation is None:
        return []
    return [
        (wc.id, f"{wc.id} misses the failed cell(s) {', '.join(wc.failed)}")
        for wc in report.evaluation.worst_case
        if wc.failed and rule.matches_epsilon(wc.epsilon)
    ]


def certified_measurements(
    report: AuditReport, rule: Rule
) -> tuple[list[tuple[str, float]], list[tuple[str, str]], str | None]:
    """(measured, unverifiable, reason) of a rule on certified robustness: one value per
    engine and radius it selects; an engine whose certification failed cannot be verified."""
    section = report.certified
    if not section:
        return [], [], "the audit ran no certification (audit with --certify)"
    if section.get("error"):
        return [], [("certified", f"certification failed: {section['error']}")], None
    measured, unverifiable = [], []
    for name, rec in (section.get("engines") or {}).items():
        if rule.matches_engine(name) and isinstance(rec, dict) and rec.get("error"):
            unverifiable.append((f"certified on {name}", f"certification of {name} failed: "
                                 f"{rec['error']}"))  # fmt: skip
    for engine, radius, values in certified_rows(section):
        if not (rule.matches_engine(engine) and rule.matches_epsilon(radius)):
            continue
        where = f"{CERTIFIED}/r={radius:g} on {engine}"
        value = values.get(rule.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            unverifiable.append((where, f"{rule.metric} was not measured for {where}"))
        else:
            measured.append((where, float(value)))
    reason = None if measured or unverifiable else "matched no certified engine and radius"
    return measured, unverifiable, reason


def warnings_outcome(
    report: AuditReport,
) -> tuple[Rule, list[tuple[str, float]], list[tuple[str, str]]]:
    """The rule "no evaluation warning" with one measurement per warning (value 1) or, when
    there is none, one passing measurement (value 0); unverifiable when the audit ran no
    checks."""
    rule = Rule(
        name="no gradient-masking or weak-evaluation warning (policy evaluation_warnings)",
        metric="evaluation_warnings", bound="max", threshold=0.0,
    )  # fmt: skip
    evaluation = report.evaluation
    if evaluation is None or evaluation.probes is None:
        failed = [w for w in (evaluation.warnings if evaluation else []) if
                  str(w.get("check", "")).endswith("_failed")]  # fmt: skip
        why = (
            str(failed[0].get("message")) if failed
            else "the audit ran no gradient-masking checks (checks = false, or an older report)"
        )  # fmt: skip
        return rule, [], [("evaluation", why)]
    if not evaluation.warnings:
        return rule, [("every check", 0.0)], []
    measured = [(str(w.get("message") or w.get("check")), 1.0) for w in evaluation.warnings]
    return rule, measured, []
