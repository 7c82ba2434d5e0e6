"""Renderers of an audit report. They format values already in the report and compute nothing."""

from __future__ import annotations

from segshield.reports.format import MISSING, format_epsilon
from segshield.reports.io import read_report, write_json
from segshield.reports.markdown import render_markdown

__all__ = ["MISSING", "format_epsilon", "read_report", "render_markdown", "write_json"]
