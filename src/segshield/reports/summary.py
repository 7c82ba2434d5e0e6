"""A short Markdown summary for a pull-request comment or ``$GITHUB_STEP_SUMMARY``.

Verdict line, failed rules, engine health, the worst case and evaluation warnings, and the
task's primary metric (Dice; accuracy for a classifier) per attack at each ε for each engine;
no links, no images. Values are formatted as in the full report and computed nowhere here.
"""

from __future__ import annotations

from segshield.reports.format import MISSING, format_percent, in_steps
from segshield.reports.markdown import escape_markdown
from segshield.reports.view_common import (
    PRIMARY_LABEL,
    engines,
    eps_format,
    ordered,
    readable,
    report_epsilons,
    value,
)
from segshield.results import AuditReport, Status

_MAX_RULES_LISTED = 10


def _text(value: object) -> str:
    """One line with unescaped pipes escaped; None as the missing mark."""
    if value is None:
        return MISSING
    return " ".join(str(value).split()).replace("|", "\\|")


def _md(value: object) -> str:
    """Table-safe text with Markdown and HTML markup escaped: a PR comment renders both."""
    return MISSING if value is None else escape_markdown(" ".join(str(value).split()))


def _code(value: object) -> str:
    """A code span: literal inside, so only backticks need removing."""
    return "`" + _text(value).replace("`", "'") + "`"


def _verdict_lines(report: AuditReport) -> list[str]:
    verdict = report.verdict
    if not isinstance(verdict, dict):
        return ["**segshield audit: no verdict** (no gate policy was applied)", ""]
    outcomes = [o for o in verdict.get("outcomes") or [] if isinstance(o, dict)]
    failed = [o for o in outcomes if o.get("passed") is not True]
    passed = verdict.get("passed") is True
    word = "✅ PASS" if passed else "❌ FAIL"
    policy = _code(verdict.get("policy_name"))
    lines = [
        f"**segshield gate: {word}** (policy {policy}: "
        f"{len(outcomes) - len(failed)} of {len(outcomes)} rules passed)",
        "",
    ]
    if failed:
        lines += [
            "| Failed rule | Measured (worst) | Threshold | Where |",
            "|---|---|---|---|",
        ]
        for o in failed[:_MAX_RULES_LISTED]:
            op = "≥" if o.get("bound") == "min" else "≤"
            worst = o.get("worst_value")
            measured = f"{worst:.4g}" if isinstance(worst, (int, float)) else MISSING
            where = readable(report, o.get("worst_where")) or o.get("reason")
            lines.append(
                f"| {_md(o.get('rule'))} | {measured} | {op} {_md(o.get('threshold'))} "
                f"| {_md(where)} |"
            )
        if len(failed) > _MAX_RULES_LISTED:
            lines.append(f"| … and {len(failed) - _MAX_RULES_LISTED} more | | | |")
        lines.append("")
    return lines


def _health_lines(report: AuditReport) -> list[str]:
    """ "Engine health: `ort-fp32` ok, `ort-int8` **failed** (agreement 0.12)" or nothing."""
    parts = []
    for e in report.engines:
        h = e.health if isinstance(e.health, dict) else {}
        status = h.get("status")
        if status is None:
            continue
        agreement = h.get("mask_dice")
        shown = f" (agreement {agreement:.4f})" if isinstance(agreement, float) else ""
        word = _md(status) if status == "ok" else f"**{_md(status)}**{shown}"
        parts.append(f"{_code(e.name)} {word}")
    return [f"Engine health: {', '.join(parts)}", ""] if parts else []


def _evaluation_lines(report: AuditReport) -> list[str]:
    """One line: the worst case over every attack at the largest ε per engine and the
    masking warnings (or whether the checks passed or ran); nothing for older reports."""
    evaluation = report.evaluation
    if evaluation is None:
        return []
    label = PRIMARY_LABEL.get(report.primary_metric, report.primary_metric)
    largest = max(evaluation.worst_case, key=lambda w: w.epsilon, default=None)
    line = ""
    if largest is not None:
        names = [n for n in engines(report) if n in largest.engines]
        names += [n for n in largest.engines if n not in names]
        shown = ", ".join(
            f"{_code(n)} {label} {format_percent(value(largest.engines[n], report.primary_metric))}"
            for n in names
        )
        eps = eps_format(report)(largest.epsilon)
        line = f"Worst case over every attack at ε={eps}: {shown}; "
    n = len(evaluation.warnings)
    if n:
        line += f"**{n} evaluation warning{'s' if n != 1 else ''}**: the attack numbers may "
        line += "overstate robustness."
    elif evaluation.probes is None:
        line += "evaluation checks not run."
    else:
        k = (evaluation.checks or {}).get("probe_images")
        line += "evaluation checks passed" + (f" (probes on {k} images)." if k else ".")
    return [line[0].upper() + line[1:], ""]


def _metric_lines(report: AuditReport) -> list[str]:
    names = engines(report)
    if not names or not (report.cells or report.clean):
        return []
    primary = report.primary_metric
    epsilons = sorted({c.epsilon for c in report.cells})
    pairs = ordered((c.attack, c.loss) for c in report.cells)
    many_losses = len({loss for _, loss in pairs}) > 1
    fe = eps_format(report)
    header = ["Attack", "Engine", "clean", *(fe(e) for e in epsilons)]
    eps_note = "ε in 1/255 steps" if in_steps(report_epsilons(report)) else "ε as decimals"
    lines = [
        f"{PRIMARY_LABEL.get(primary, primary)} per attack and ε ({eps_note}):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---", *("--:" for _ in header[2:])]) + "|",
    ]
    for attack, loss in pairs:
        by_eps = {c.epsilon: c for c in report.cells if c.attack == attack and c.loss == loss}
        label = attack.upper() + (f" ({loss})" if many_losses else "")
        for engine in names:
            row = [_md(label), _code(engine)]
            row.append(format_percent(value(report.clean.get(engine), primary)))
            for eps in epsilons:
                cell = by_eps.get(eps)
                if cell is None:
                    row.append("")
                elif cell.status != Status.OK:
                    row.append("failed")
                else:
                    row.append(format_percent(value(cell.engines.get(engine), primary)))
            lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def render_pr_summary(report: AuditReport) -> str:
    """A compact Markdown summary: verdict, failed rules, the primary metric per attack x ε x
    engine."""
    lines = _verdict_lines(report)
    lines += _health_lines(report)
    lines += _evaluation_lines(report)
    lines += _metric_lines(report)
    n_failed = sum(c.status != Status.OK for c in report.cells)
    if n_failed:
        lines += [f"{n_failed} of {len(report.cells)} attack cells failed to run.", ""]
    model = report.model.get("name") or report.model.get("source") or "model"
    dataset = report.dataset.get("name") or report.dataset.get("source") or "dataset"
    n_images = report.dataset.get("n_images")
    images = f", {n_images} images" if n_images is not None else ""
    lines.append(f"<sub>Model {_code(model)} on {_code(dataset)}{images}.</sub>")
    return "\n".join(lines).rstrip() + "\n"
