"""The gate's first step: refuse a report whose content was changed after it was written or
holds values no audit can produce (:mod:`segshield.results.integrity`), before any rule is
evaluated. A refused report is bad input (ReportError, exit 2), never a pass or a fail."""

from __future__ import annotations

import logging
from pathlib import Path

from segshield.errors import PolicyError, ReportError
from segshield.gate.evaluate import GateResult, evaluate
from segshield.gate.policy import Policy
from segshield.reports.io import read_report_json, report_from_json
from segshield.results import AuditReport
from segshield.results.integrity import integrity_problems, is_verified

__all__ = [
    "UNVERIFIED",
    "VERIFIED",
    "gate_against_baseline",
    "read_verified_report",
    "require_baseline",
    "verify_report",
]

log = logging.getLogger(__name__)

VERIFIED, UNVERIFIED = "verified", "unverified"


def verify_report(report: AuditReport, raw: dict | None = None, origin: str = "report") -> str:
    """Check ``report`` (and its JSON ``raw`` as read, when given) for integrity problems.

    Returns "verified" (its content hash matches) or "unverified" (a report written before
    segshield hashed reports: accepted, with a warning logged); raises ReportError naming
    the first problem and how many there are.
    """
    problems = integrity_problems(report, raw)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ReportError(
            f"{origin}: refused, {len(problems)} integrity problem(s): {problems[0]}{more}"
        )
    if is_verified(raw if raw is not None else report):
        return VERIFIED
    log.warning(
        "%s: unverified: no integrity entry (written by a segshield that did not hash "
        "reports); its values were checked, its content hash could not be",
        origin,
    )
    return UNVERIFIED


def read_verified_report(path: str | Path) -> tuple[AuditReport, str]:
    """Read report.json and verify it (:func:`verify_report`); ReportError names the path."""
    raw = read_report_json(path)
    report = report_from_json(raw, path)
    return report, verify_report(report, raw, origin=str(path))


def require_baseline(policy: Policy, has_baseline: bool, how: str = "--baseline") -> None:
    """Refuse (PolicyError) a policy with rules against a baseline when none will be given,
    before anything is read or run."""
    needing = [r.name for r in policy.rules if r.needs_baseline]
    if needing and not has_baseline:
        raise PolicyError(
            f"policy {policy.name!r}: rule(s) {', '.join(repr(n) for n in needing)} bound the "
            f"change from a baseline report and need {how}"
        )


def gate_against_baseline(
    report_path: str | Path, policy: Policy, baseline_path: str | Path
) -> tuple[AuditReport, GateResult]:
    """Evaluate a policy against report.json with its baseline rules against another
    report.json; both are read and verified (:func:`read_verified_report`) first."""
    report, _ = read_verified_report(report_path)
    baseline, _ = read_verified_report(baseline_path)
    return report, evaluate(report, policy, baseline)
