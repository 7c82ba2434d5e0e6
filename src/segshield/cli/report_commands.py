"""`segshield gate` and `segshield report`: a finished audit's report.json checked against a
policy, or rendered again, without re-running anything (torch is never imported).

Plain functions with typer annotations; `segshield.cli.main` registers them on the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segshield.cli.errors import EXIT_GATE_FAILED, EXIT_OK, error_boundary
from segshield.cli.options import console


def gate(
    report: Annotated[Path, typer.Argument(help="report.json written by segshield audit.")],
    policy: Annotated[Path, typer.Option(help="Gate policy (TOML).")],
    baseline: Annotated[
        Path | None,
        typer.Option(help="Baseline report.json for the rules on the change (max_drop, ...)."),
    ] = None,
) -> None:
    """Check a report against a policy: exit 0 pass, 1 a rule crossed, 2 bad input."""
    from segshield.api import gate_report
    from segshield.cli.render import print_verdict
    from segshield.gate import policy_from_toml
    from segshield.gate.verify import gate_against_baseline, require_baseline

    with error_boundary():
        pol = policy_from_toml(policy)
        require_baseline(pol, baseline is not None)
        if baseline is None:
            _, result = gate_report(report, pol)
        else:
            _, result = gate_against_baseline(report, pol, baseline)
    print_verdict(console, result)
    raise typer.Exit(EXIT_OK if result.passed else EXIT_GATE_FAILED)


def report(
    report_json: Annotated[Path, typer.Argument(help="report.json written by segshield audit.")],
    fmt: Annotated[
        str, typer.Option("--format", help="md, html, junit, csv or summary (PR comment).")
    ] = "md",
    out: Annotated[
        Path | None,
        typer.Option(help="Output file (default: stdout); missing folders are created."),
    ] = None,
) -> None:
    """Re-render a report from report.json without re-running the audit."""
    from segshield.api import render_report_file
    from segshield.errors import SegShieldError

    with error_boundary():
        if out is not None and out.is_dir():
            raise SegShieldError(f"--out {out} is a folder; name the file to write")
        text = render_report_file(report_json, fmt)
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, newline="" if fmt == "csv" else None)
            console.print(f"wrote {out}", markup=False, highlight=False)
    raise typer.Exit(EXIT_OK)
