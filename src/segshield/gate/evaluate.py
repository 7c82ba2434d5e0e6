"""Evaluate a policy against an audit report: the release verdict.

A rule passes only when it matched at least one measurement, every matched measurement could
be read, and every one satisfies the bound. Anything the gate cannot verify (a failed cell, an
unavailable engine, a missing value, a rule whose selectors match nothing) fails the rule: a
typo or a crash must never pass a release. A rule bounding the change from a baseline report
(:mod:`segshield.gate.baseline`) reads the same measurements on both reports.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from segshield.gate.baseline import BASELINE_MISSING, Measurements, changes_from_baseline
from segshield.gate.policy import Policy, Rule
from segshield.gate.strength import (
    Target,
    certified_measurements,
    warnings_outcome,
    worst_case_failures,
    worst_case_targets,
)
from segshield.results import CLEAN, SOURCE_ENGINE, AuditReport, EngineEval, Status
from segshield.results.types import SURFACE_METRICS

# At most this many unverifiable reasons are spelled out in a rule's reason (all are in failures).
_MAX_REASONS = 5


@dataclass
class RuleOutcome:
    """What one rule found. `failures` holds one ``{"where", "value"}`` per violating
    measurement, then one ``{"where", "value": None, "reason"}`` per unverifiable one. For a
    bound against a baseline the values (and ``worst_value``) are the changes, worse being
    larger, and a violation also carries its ``"baseline"`` and ``"new"`` value."""

    rule: str
    metric: str
    bound: str  # "min" | "max", or a bound on the change from a baseline ("max_drop", ...)
    threshold: float
    passed: bool
    worst_value: float | None
    worst_where: str | None
    n_checked: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None


@dataclass
class GateResult:
    """The verdict of a policy on a report; `to_dict()` is stored as ``report.verdict``."""

    policy_name: str
    passed: bool
    outcomes: list[RuleOutcome]

    def failed_rules(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        return _finite(
            {
                "policy_name": self.policy_name,
                "passed": self.passed,
                "n_rules": len(self.outcomes),
                "n_failed": len(self.failed_rules()),
                "outcomes": [asdict(o) for o in self.outcomes],
            }
        )


def _finite(value: Any) -> Any:
    """NaN/Inf -> None recursively, so the verdict is strict JSON like the rest of the report."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _engine_names(report: AuditReport) -> list[str]:
    """Every engine the report mentions, in record order, then any only seen in evaluations."""
    names = list(report.engine_names)
    for evals in [report.clean, *(c.engines for c in report.cells)]:
        names.extend(n for n in evals if n not in names)
    return names


def _targets(report: AuditReport, rule: Rule) -> list[Target]:
    """(label, cell, evaluations) the rule selects: the clean evaluation (cell None), the
    attack cells, and the worst case per ε (cell None) when the rule names it."""
    targets: list[Target] = []
    if rule.selects_clean and rule.matches_epsilon(0.0):
        targets.append((CLEAN, None, report.clean))
    for cell in report.cells:
        # "clean" in the attack selector names the clean evaluation, never a cell.
        if cell.attack.lower() == CLEAN:
            continue
        if (
            rule.matches_attack(cell.attack)
            and rule.matches_loss(cell.loss)
            and rule.matches_epsilon(cell.epsilon)
        ):
            targets.append((cell.id, cell, cell.engines))
    return targets + worst_case_targets(report, rule)


def _measure(report: AuditReport, rule: Rule) -> Measurements:
    """Every value the rule selects on `report`, and what it selects but cannot read."""
    if rule.selects_certified:
        return Measurements(*certified_measurements(report, rule))
    found = Measurements(unverifiable=worst_case_failures(report, rule))
    unverifiable = found.unverifiable
    targets = _targets(report, rule)

    engines: list[str] = []
    if rule.per_engine:
        records = {e.name: e for e in report.engines}
        for name in (n for n in _engine_names(report) if rule.matches_engine(n)):
            record = records.get(name)
            if record is not None and record.status != Status.OK:
                why = f": {record.reason}" if record.reason else ""
                unverifiable.append((f"engine {name}", f"engine {name} was {record.status}{why}"))
            else:
                engines.append(name)

    if (not targets and not unverifiable) or (rule.per_engine and not engines and not unverifiable):
        known = ", ".join(_engine_names(report)) or "none"
        return Measurements(reason=f"matched no audit cell (engines in report: {known})")

    for label, cell, evals in targets:
        if cell is not None and cell.status != Status.OK:
            unverifiable.append((label, f"cell {label} failed: {cell.error or cell.status}"))
            continue
        if not rule.per_engine:
            perturbation = cell.perturbation if cell is not None else None
            value = _number(getattr(perturbation, rule.metric, None))
            if value is None:
                unverifiable.append((label, f"cell {label} has no {rule.metric} measured"))
            else:
                found.measured.append((label, value))
            continue
        for engine in engines:
            where = f"{label} on {engine}"
            ev = evals.get(engine)
            if ev is None:
                unverifiable.append((where, f"{label} has no evaluation on engine {engine}"))
            elif ev.status != Status.OK:
                unverifiable.append((where, f"{label} failed on engine {engine}: {ev.error}"))
            else:
                value = _number(_value(ev, rule))
                if value is None:
                    unverifiable.append((where, _unmeasured(rule, where, ev)))
                else:
                    found.measured.append((where, value))
    return found


def _class_scores(ev: EngineEval, label: str) -> Any:
    """The per-class scores of class ``label`` (name, case-insensitive, or index), or None."""
    for scores in ev.metrics.per_class if ev.metrics is not None else []:
        if label.lower() in (str(scores.index), (scores.name or "").lower()):
            return scores
    return None


def _value(ev: EngineEval, rule: Rule) -> Any:
    """The rule's metric on ``ev``: the whole set's, or one class's with ``label``."""
    if rule.label is None:
        return ev.value(rule.metric)
    scores = _class_scores(ev, rule.label)
    return None if scores is None else getattr(scores, rule.metric, None)


def _unmeasured(rule: Rule, where: str, ev: EngineEval) -> str:
    """Why a rule cannot read its metric on ``ev``: a missing class and undefined surface
    distances are named."""
    metric = rule.metric
    if rule.label is not None and _class_scores(ev, rule.label) is None:
        known = [s.name or str(s.index) for s in (ev.metrics.per_class if ev.metrics else [])]
        return f"{where} has no class {rule.label!r} (classes: {', '.join(known) or 'none'})"
    if rule.label is not None:
        return f"{metric} of class {rule.label!r} is undefined for {where}"
    undefined = ev.metrics.n_surface_undefined if ev.metrics is not None else 0
    if metric in SURFACE_METRICS and undefined:
        return (
            f"{metric} is undefined for {where}: {undefined} image(s) whose prediction misses "
            "a ground-truth class entirely"
        )
    return f"{metric} was not measured for {where}"


def _evaluate_rule(report: AuditReport, rule: Rule, baseline: AuditReport | None) -> RuleOutcome:
    """The rule's bound on each measurement, or (a baseline bound) on its change from the
    same measurement of `baseline`."""
    found = _measure(report, rule)
    if not rule.needs_baseline:
        return _outcome(rule, found.measured, found.unverifiable, reason=found.reason)
    if baseline is None:
        return _outcome(rule, [], [], reason=BASELINE_MISSING)
    changes, missing, details = changes_from_baseline(rule, found, _measure(baseline, rule))
    return _outcome(rule, changes, found.unverifiable + missing, found.reason, details)


def _outcome(
    rule: Rule,
    measured: list[tuple[str, float]],
    unverifiable: list[tuple[str, str]],
    reason: str | None = None,
    details: dict[str, dict[str, float]] | None = None,
) -> RuleOutcome:
    """The verdict on the values (for a baseline bound: the changes, with `details` holding
    the baseline and new value of each, added to its failure and the worst's description)."""
    details = details or {}
    worst_where, worst_value = None, None
    if measured:
        pick = min if rule.bound == "min" else max
        worst_where, worst_value = pick(measured, key=lambda m: m[1])
    violations = [(w, v) for w, v in measured if not rule.satisfied_by(v)]
    failures: list[dict[str, Any]] = [
        {"where": w, "value": v, **details.get(w, {})} for w, v in violations
    ]
    failures += [{"where": w, "value": None, "reason": r} for w, r in unverifiable]

    reasons = [reason] if reason else []
    if violations:
        side = "below min" if rule.bound == "min" else f"above {rule.bound}"
        pair = details.get(worst_where or "")
        was = f": {pair['baseline']:.6g} -> {pair['new']:.6g}" if pair else ""
        reasons.append(
            f"{len(violations)} of {len(measured)} measurement(s) {side} {rule.threshold:g} "
            f"(worst {worst_value:.6g} at {worst_where}{was})"
        )
    if unverifiable:
        listed = "; ".join(r for _, r in unverifiable[:_MAX_REASONS])
        more = len(unverifiable) - _MAX_REASONS
        reasons.append(
            f"cannot be verified: {listed}" + (f" (and {more} more)" if more > 0 else "")
        )
    return RuleOutcome(
        rule=rule.name,
        metric=rule.metric,
        bound=rule.bound,
        threshold=rule.threshold,
        passed=not reasons,
        worst_value=worst_value,
        worst_where=worst_where,
        n_checked=len(measured),
        failures=failures,
        reason="; ".join(reasons) if reasons else None,
    )


def _health_outcome(report: AuditReport, level: str) -> RuleOutcome:
    """Every engine with a measured health is at least `level` ("ok" | "degraded"): its
    stored clean mask agreement with the source >= the report's threshold for that level."""
    measured: list[tuple[str, float]] = []
    unverifiable: list[tuple[str, str]] = []
    threshold = 0.0
    for record in report.engines:
        health = record.health
        if record.name == SOURCE_ENGINE or not health:
            continue  # the reference itself; or not run here (unavailable) / older report
        bound = health.get("ok_min" if level == "ok" else "failed_below")
        threshold = max(threshold, _number(bound) or 0.0)
        value = _number(health.get("mask_dice"))
        if value is None:  # it could not be scored at all (build or clean run failed)
            why = health.get("reason") or "agreement not measured"
            unverifiable.append((record.name, f"engine {record.name} is failed: {why}"))
        else:  # the status follows from the same thresholds, so the bound decides
            measured.append((f"engine {record.name} ({health.get('status')})", value))
    rule = Rule(
        name=f"every engine's health is at least {level} (policy engine_health)",
        metric="engine_health_mask_dice", bound="min", threshold=threshold,
        attacks=None, losses=None, engines=None,
    )  # fmt: skip
    outcome = _outcome(rule, measured, unverifiable)
    if not measured and not unverifiable:
        outcome.reason = None  # no engine besides the source was run: nothing to judge
        outcome.passed = True
    return outcome


def _warnings_outcome(report: AuditReport) -> RuleOutcome:
    """No gradient-masking / weak-evaluation warning (policy evaluation_warnings = "fail")."""
    rule, measured, unverifiable = warnings_outcome(report)
    return _outcome(rule, measured, unverifiable)


def evaluate(
    report: AuditReport, policy: Policy, baseline: AuditReport | None = None
) -> GateResult:
    """Check every rule of `policy` against `report` (a rule bounding the change from a
    baseline against `baseline`; without one it fails), then (unless the policy's
    engine_health is "off") that every engine is healthy enough, and (evaluation_warnings =
    "fail") that the audit raised no gradient-masking warning; computes no new measurement."""
    outcomes = [_evaluate_rule(report, rule, baseline) for rule in policy.rules]
    if policy.engine_health != "off":
        outcomes.append(_health_outcome(report, policy.engine_health))
    if policy.evaluation_warnings == "fail":
        outcomes.append(_warnings_outcome(report))
    return GateResult(
        policy_name=policy.name, passed=all(o.passed for o in outcomes), outcomes=outcomes
    )
