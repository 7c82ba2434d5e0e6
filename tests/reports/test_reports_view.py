"""The format-neutral view: Markdown and HTML lay out the same view, so they show the same
numbers; a schema-1 report still loads and renders."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import pytest

from segshield.reports import build_view, render_html, render_markdown
from segshield.reports.markdown import escape_markdown
from segshield.reports.view import Table
from segshield.results import SCHEMA_VERSION, AuditReport

DATA = Path(__file__).parent / "data"


def load(name: str) -> AuditReport:
    return AuditReport.from_dict(json.loads((DATA / f"report_{name}.json").read_text()))


@pytest.mark.parametrize("name", ["pass", "fail", "classify", "v1", "multiclass"])
def test_markdown_and_html_show_the_same_numbers(name: str) -> None:
    report = load(name)
    view = build_view(report)
    md, html = render_markdown(report), render_html(report)
    numbers = {
        c.text
        for s in view.sections
        if s.markdown
        for b in s.blocks
        if isinstance(b, Table) and b.markdown
        for row in b.rows
        for c in row
        if c.num and re.search(r"\d", c.text)
    }
    assert numbers
    for text in numbers:  # "+<0.01 pp" reads "+&lt;0.01 pp" in both (markup is escaped)
        assert escape_markdown(text) in md, text
        assert escape(text) in html, text


def test_section_ids_agree() -> None:
    report = load("pass")
    view = build_view(report)
    html = render_html(report)
    assert re.findall(r'<section id="([^"]+)">', html) == view.section_ids
    md = render_markdown(report)
    for section in view.sections:
        assert f"## {section.title}" in md


def test_schema_1_report_loads_and_renders() -> None:
    raw = json.loads((DATA / "report_v1.json").read_text())
    assert raw["schema_version"] == 1 and SCHEMA_VERSION == 2
    report = AuditReport.from_dict(raw)
    assert report.task == "binary"
    assert report.cells and report.clean["pytorch"].metrics.dice is not None
    md = render_markdown(report)
    assert "## Summary per engine (Table I)" in md and "## ε curves" in md
    html = render_html(report)
    assert '<section id="summary">' in html and "<svg" in html


def test_cell_warnings_are_shown_under_the_panels() -> None:
    report = load("pass")
    cell = report.cells[0]
    warning = "2 of 2 image panels were not written (OSError: disk full); the cell's..."
    cell.warnings = [warning]
    view = build_view(report)
    texts = [c.text for b in view.section("panels").blocks for c in getattr(b, "parts", [])]
    texts += [
        c.text for b in view.section("panels").blocks for item in getattr(b, "items", [])
        for c in item
    ]  # fmt: skip
    assert f": {warning}" in texts
    md, html = render_markdown(report), render_html(report)
    assert warning in md and escape(warning) in html
    # the panels section says it even when no panel was written at all
    for c in report.cells:
        c.panels = []
    assert warning in render_markdown(report)


def test_classifier_cell_warnings_are_shown() -> None:
    report = load("classify")
    report.cells[0].warnings = ["Something on the side was not written; the cell's ..."]
    assert "Something on the side was not written" in render_markdown(report)
    assert "Something on the side was not written" in render_html(report)


def test_empty_ground_truth_count_is_shown() -> None:
    report = load("pass")
    measured = [ev.metrics for ev in report.clean.values() if ev.metrics is not None]
    for m in measured:
        m.n_empty_truth = 3
    md, html = render_markdown(report), render_html(report)
    n = report.clean["pytorch"].metrics.n_images
    sentence = f"3 of {n} images have an empty ground truth"
    assert sentence in md and sentence in html
    assert "per-image means" in md
    for m in measured:
        m.n_empty_truth = 0
    assert "empty ground truth" not in render_markdown(report)
