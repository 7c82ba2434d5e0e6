"""Renderers of an audit report. They format values already in the report and compute nothing."""

from __future__ import annotations

from segshield.reports.classify import (
    CLASSIFIER_SECTION_IDS,
    render_classifier_html,
    render_classifier_markdown,
)
from segshield.reports.csvfile import CSV_COLUMNS, render_csv
from segshield.reports.format import MISSING, format_epsilon
from segshield.reports.html import SECTION_IDS, render_html
from segshield.reports.io import read_report, write_json
from segshield.reports.junit import render_junit
from segshield.reports.markdown import render_markdown
from segshield.reports.summary import render_pr_summary

__all__ = [
    "CLASSIFIER_SECTION_IDS",
    "CSV_COLUMNS",
    "MISSING",
    "SECTION_IDS",
    "format_epsilon",
    "read_report",
    "render_classifier_html",
    "render_classifier_markdown",
    "render_csv",
    "render_html",
    "render_junit",
    "render_markdown",
    "render_pr_summary",
    "write_json",
]
