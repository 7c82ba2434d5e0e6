"""The engine health section: first after the verdict, in Markdown and HTML, from the stored
health only (renderers compute nothing)."""

from __future__ import annotations

import re

from test_reports_markdown import make_report

from segshield.engines.health import HealthThresholds, assess_health
from segshield.reports import build_view, render_html, render_markdown


def _with_health():
    report = make_report()
    thresholds = HealthThresholds()
    report.engines[0].health = assess_health(1.0, 0.0, 4, thresholds).to_dict()
    report.engines[1].health = assess_health(0.12, 0.3, 4, thresholds).to_dict()
    return report


def test_health_section_follows_the_verdict_and_names_failures() -> None:
    view = build_view(_with_health())
    ids = view.section_ids
    assert ids.index("health") == ids.index("verdict") + 1 if "verdict" in ids else 0
    md = render_markdown(_with_health())
    assert md.index("## Engine health") < md.index("## Summary") if "## Summary" in md else True
    assert "Engine health: `pytorch` ok, `onnxruntime` **failed** (1 not ok)." in md
    assert (
        "clean mask agreement with the source 0.1200, below the failed bound 0.8, on 4 image(s)"
        in md
    )
    html = render_html(_with_health())
    sections = re.findall(r'<section id="([^"]+)">', html)
    assert sections.index("health") < sections.index("engines")
    assert 'class="health"' in html


def test_reports_without_health_have_no_health_section() -> None:
    assert "health" not in build_view(make_report()).section_ids


def test_summary_csv_and_junit_carry_engine_health() -> None:
    import csv
    import io
    import xml.etree.ElementTree as ET

    from segshield.reports import render_csv, render_junit, render_pr_summary

    report = _with_health()
    summary = render_pr_summary(report)
    assert "Engine health: `pytorch` ok, `onnxruntime` **failed** (agreement 0.1200)" in summary
    assert summary.index("Engine health") < summary.index("per attack and ε")
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert {r["engine"]: r["engine_health"] for r in rows}["onnxruntime"] == "failed"
    report.verdict = None  # no verdict: the audit's own suite (a policy gates health itself)
    root = ET.fromstring(render_junit(report))
    cases = root.findall(".//testcase")
    assert cases[0].get("name") == "engine health: pytorch"
    assert cases[1].find("failure").get("type") == "health"
    assert root.find("testsuite").get("failures") == "1"
