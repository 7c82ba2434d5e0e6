"""The library's front door: one call per CLI command, composing the pipeline stages
(data -> models -> attacks -> exporters -> engines -> metrics -> audits -> reports -> gate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segshield.audits import AuditReport
from segshield.errors import ReportError
from segshield.gate import GateResult, Policy, evaluate
from segshield.reports import (
    read_report,
    render_csv,
    render_html,
    render_junit,
    render_markdown,
    render_pr_summary,
    write_json,
)

if TYPE_CHECKING:  # the audit runner imports torch: loaded only when an audit runs
    from segshield.audits import AuditConfig

ProgressFn = Callable[[str, int, int], None]


@dataclass
class AuditOutcome:
    """An audit's report, its gate verdict (when a policy was given) and the files written."""

    report: AuditReport
    gate: GateResult | None
    files: dict[str, Path] = field(default_factory=dict)


# format name -> (file name in the audit folder, renderer)
FORMATS = {
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
    "csv": "results.csv",
    "summary": "summary.md",
}


def render(report: AuditReport, fmt: str, base_dir: Path | None = None) -> str:
    """One format of a report: md, html (images read from base_dir), junit, csv, summary."""
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report, base_dir=base_dir)
    if fmt == "junit":
        return render_junit(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "summary":
        return render_pr_summary(report)
    raise ReportError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_reports(report: AuditReport, out_dir: Path) -> dict[str, Path]:
    """report.json (the source of truth) and every other format rendered from it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(report, out_dir / "report.json")
    # Render from what was written, so no format can show what the JSON lacks.
    written = read_report(json_path)
    files = {"json": json_path}
    for fmt, name in FORMATS.items():
        path = out_dir / name
        path.write_text(
            render(written, fmt, base_dir=out_dir), newline="" if fmt == "csv" else None
        )
        files[fmt] = path
    return files


def render_report_file(report_path: Path, fmt: str) -> str:
    """Re-render a report.json written earlier (no audit is re-run)."""
    return render(read_report(report_path), fmt, base_dir=Path(report_path).parent)


def audit(
    config: AuditConfig,
    policy: Policy | None = None,
    progress: ProgressFn | None = None,
    command: str = "",
) -> AuditOutcome:
    """Run the audit, gate it when a policy is given, write the reports into config.out_dir."""
    from segshield.audits import run_audit

    report = run_audit(config, progress=progress, command=command)
    verdict = None
    if policy is not None:
        verdict = evaluate(report, policy)
        report.verdict = verdict.to_dict()
    files = write_reports(report, config.out_dir)
    if "onnxruntime" in config.engines and (config.out_dir / "model.onnx").is_file():
        files["onnx"] = config.out_dir / "model.onnx"
    return AuditOutcome(report, verdict, files)


def gate_report(report_path: Path, policy: Policy) -> tuple[AuditReport, GateResult]:
    """Evaluate a policy against a report.json written earlier."""
    report = read_report(report_path)
    return report, evaluate(report, policy)
