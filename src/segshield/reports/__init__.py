"""Renderers of an audit report. They lay out one format-neutral view of the report
(:mod:`segshield.reports.view`), format values already in it, and compute nothing."""

from __future__ import annotations

from segshield.reports.comparison import render_comparison_html, render_comparison_markdown
from segshield.reports.csvfile import CSV_COLUMNS, render_csv
from segshield.reports.format import MISSING, format_epsilon
from segshield.reports.html import render_html
from segshield.reports.io import read_report, write_json
from segshield.reports.junit import render_junit
from segshield.reports.markdown import render_markdown
from segshield.reports.summary import render_pr_summary
from segshield.reports.view import (
    CLASSIFIER_SECTION_IDS,
    CORE_SECTION_IDS,
    SECTION_IDS,
    ReportView,
    build_view,
)

__all__ = [
    "CLASSIFIER_SECTION_IDS",
    "CORE_SECTION_IDS",
    "CSV_COLUMNS",
    "MISSING",
    "SECTION_IDS",
    "ReportView",
    "build_view",
    "format_epsilon",
    "read_report",
    "render_comparison_html",
    "render_comparison_markdown",
    "render_csv",
    "render_html",
    "render_junit",
    "render_markdown",
    "render_pr_summary",
    "write_json",
]
