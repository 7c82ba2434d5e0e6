"""The unified Markdown and HTML renderers fed a classifier audit: the seed's accuracy-vs-ε
and SSIM-vs-ε tables and charts, per-class accuracy, flip and success rates, failures and
skipped attacks, escaping, and that nothing is recomputed."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from segshield.reports import CLASSIFIER_SECTION_IDS, render_html, render_markdown
from segshield.reports.format import format_epsilon, format_percent
from segshield.results import AuditCell, AuditReport, Status

DATA = Path(__file__).parent / "data"
HOSTILE = "<script>alert('pwned')</script> | x"


@pytest.fixture
def report() -> AuditReport:
    """report_classify.json (scripts/make_report_fixtures.py): the shipped patch classifier,
    fgsm and pgd at 0, 4/255 and 0.1, the targeted asma skipped, a failing "nope" injected."""
    return AuditReport.from_dict(json.loads((DATA / "report_classify.json").read_text()))


def cells_of(report: AuditReport, attack: str) -> list[AuditCell]:
    return [c for c in report.cells if c.attack == attack]


def test_markdown_tables(report: AuditReport) -> None:
    md = render_markdown(report)
    assert md.startswith("# segshield classifier audit: ")
    assert "## Accuracy vs ε" in md and "## SSIM vs ε" in md
    assert "### FGSM" in md and "### PGD" in md and "### NOPE" in md
    names = [s.name or f"class {s.index}" for s in report.clean["pytorch"].metrics.per_class]
    header = "| ε | Accuracy | 95% CI | " + " | ".join(f"Acc. {n}" for n in names)
    assert header + " | Flipped | Success rate |" in md
    assert "| ε | FGSM mean | FGSM min | PGD mean | PGD min | NOPE mean | NOPE min |" in md
    for c in cells_of(report, "fgsm"):
        ev = c.engines["pytorch"]
        ci = ev.ci["accuracy"]
        per_class = " | ".join(format_percent(s.recall) for s in ev.metrics.per_class)
        row = (
            f"| {format_epsilon(c.epsilon)} | {format_percent(ev.metrics.accuracy)} | "
            f"[{format_percent(ci.low)}, {format_percent(ci.high)}] | {per_class} | "
            f"{format_percent(ev.flip_rate)} | {format_percent(ev.success_rate)} |"
        )
        assert row in md
    # Every ε of the SSIM table, ε = 0 with SSIM exactly shown as 1.
    assert "| 0 | 1 | 1 | 1 | 1 | — | — |" in md
    assert "| 4/255 |" in md and "| 0.1 |" in md
    clean = report.clean["pytorch"].metrics.accuracy
    assert f"Clean accuracy: **{format_percent(clean)}**" in md
    assert "## Failed cells" in md and "NOPE · bce · ε=" in md and "unknown attack" in md
    assert "## Skipped attacks" in md and "| asma | " in md
    assert "## Provenance" in md and report.provenance["data_sha256"] in md


def test_markdown_from_dict_and_escaping(report: AuditReport) -> None:
    again = AuditReport.from_dict(report.to_dict())
    assert render_markdown(again) == render_markdown(report)
    hostile = copy.deepcopy(report)
    cells_of(hostile, "nope")[0].error = HOSTILE + "\nsecond line"
    md = render_markdown(hostile)
    line = next(x for x in md.splitlines() if x.startswith("| NOPE · bce · ε="))
    assert "\\| x second line" in line  # one table row, pipe escaped
    assert "<script>" not in md


def test_renderers_compute_nothing(report: AuditReport) -> None:
    edited = copy.deepcopy(report)
    c = cells_of(edited, "pgd")[1]
    c.engines["pytorch"].metrics.accuracy = 0.123456
    c.perturbation.ssim_mean = 0.5
    md = render_markdown(edited)
    assert "12.35%" in md and "| 0.5 |" in md
    assert "12.35%" in render_html(edited)


def test_html_is_self_contained_with_two_charts(report: AuditReport) -> None:
    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>")
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("<svg") == 2
    assert 'aria-label="Accuracy vs ε"' in html
    assert 'aria-label="Mean SSIM (adversarial vs clean) vs ε"' in html
    for sid in (*CLASSIFIER_SECTION_IDS, "skipped"):
        assert f'<section id="{sid}">' in html
    # One line per attack with data in each chart (the failing one has none).
    assert len(re.findall(r'<polyline class="series" data-series="FGSM"', html)) == 2
    assert len(re.findall(r'<polyline class="series" data-series="PGD"', html)) == 2
    assert 'data-series="NOPE"' not in html
    assert 'class="interval"' in html  # accuracy CI bars
    assert format_percent(report.clean["pytorch"].metrics.accuracy) in html


def test_html_escapes_report_text(report: AuditReport) -> None:
    hostile = copy.deepcopy(report)
    hostile.model["name"] = HOSTILE
    cells_of(hostile, "nope")[0].error = HOSTILE
    hostile.skipped[0]["reason"] = HOSTILE
    html = render_html(hostile)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html


def test_failed_cells_are_listed(report: AuditReport) -> None:
    failed = [c for c in report.cells if c.status != Status.OK]
    assert failed
    md = render_markdown(report)
    for c in failed:  # the cell as people read it (its id is the HTML hover title)
        assert f"| NOPE · {c.loss} · ε={format_epsilon(c.epsilon)} | all |" in md
        assert f'<span title="{c.id}">' in render_html(report)
