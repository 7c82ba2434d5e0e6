"""`segshield compare`: is this release less robust than the last one? Two report.json files
matched row by row (:mod:`segshield.results.comparison`).

A plain function with typer annotations; `segshield.cli.main` registers it on the app.
Exit codes: 0 compared; 1 with --fail-on-regression when a Dice drop is significant; 2 bad
input (a missing file, not a report, a changed report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segshield.cli.errors import EXIT_GATE_FAILED, EXIT_OK, error_boundary
from segshield.cli.options import check_out, console


def compare(
    base: Annotated[Path, typer.Argument(help="report.json of the base (the last release).")],
    new: Annotated[Path, typer.Argument(help="report.json of the new audit.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for comparison.json, comparison.md and comparison.html."),
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(help="Exit 1 when any Dice drop is significant (intervals apart)."),
    ] = False,
) -> None:
    """Compare two audit reports: Dice, attack success and latency changes, row by row."""
    from segshield.api import compare_report_files
    from segshield.reports.comparison import render_comparison_markdown

    with error_boundary():
        if out is not None:
            check_out(out)
        comparison = compare_report_files(base, new, out)
        text = render_comparison_markdown(comparison)
        # soft_wrap: a Markdown table row stays one line, whatever the terminal's width
        console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
        if out is not None:
            console.print(f"wrote {out}/comparison.{{json,md,html}}", markup=False)
    failed = fail_on_regression and comparison.regressed
    raise typer.Exit(EXIT_GATE_FAILED if failed else EXIT_OK)
