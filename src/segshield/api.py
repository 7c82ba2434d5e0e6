"""The library's front door: one call per CLI command, composing the pipeline stages
(data -> models -> attacks -> exporters -> engines -> metrics -> audits -> reports -> gate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segshield.audits import AuditReport
from segshield.gate import GateResult, Policy, evaluate
from segshield.reports import read_report, render_markdown, write_json

if TYPE_CHECKING:  # the audit runner imports torch: loaded only when an audit runs
    from segshield.audits import AuditConfig

ProgressFn = Callable[[str, int, int], None]


@dataclass
class AuditOutcome:
    """An audit's report, its gate verdict (when a policy was given) and the files written."""

    report: AuditReport
    gate: GateResult | None
    files: dict[str, Path] = field(default_factory=dict)


def write_reports(report: AuditReport, out_dir: Path) -> dict[str, Path]:
    """report.json (the source of truth) and report.md rendered from it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(report, out_dir / "report.json")
    md_path = out_dir / "report.md"
    # Render from what was written, so the Markdown can never show what the JSON lacks.
    md_path.write_text(render_markdown(read_report(json_path)))
    return {"json": json_path, "markdown": md_path}


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
