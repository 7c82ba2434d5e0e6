"""The evaluation-strength sections (worst case, masking warnings, certification) in every
format, from stored values only; reports without them render as before."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console
from test_reports_markdown import ORT, make_report

from segshield.cli.render import summary_tables
from segshield.reports import (
    build_view,
    render_csv,
    render_html,
    render_junit,
    render_markdown,
    render_pr_summary,
)
from segshield.reports.csvfile import CSV_COLUMNS
from segshield.results import (
    AuditCell,
    AuditReport,
    EngineEval,
    Evaluation,
    Metrics,
    WorstCase,
)

NEW_IDS = ("evaluation-warnings", "worst-case", "certified")
EVIL = "PGD on <script>alert(1)</script> | x: attack success falls from 4/255 to 8/255"
PGD4, FGSM4 = AuditCell.make_id("pgd", "bce", 4 / 255), AuditCell.make_id("fgsm", "bce", 4 / 255)


def _eval(engine: str, dice: float, per_image: float, success: float) -> EngineEval:
    metrics = Metrics(dice=dice, dice_per_image_mean=per_image, n_images=4)
    return EngineEval(engine, metrics=metrics, attack_success=success)


def _evaluation(warnings: bool = True) -> Evaluation:
    worst = [
        WorstCase(
            epsilon=4 / 255,
            cells=[PGD4, FGSM4],
            engines={"pytorch": _eval("pytorch", 0.55, 0.5, 0.35),
                     ORT: _eval(ORT, 0.545, 0.49, 0.36)},
            chosen={"pytorch": [PGD4, FGSM4, PGD4, PGD4]},
        )
    ]  # fmt: skip
    found = [
        {"check": "non_monotone_eps", "message": EVIL, "attack": "pgd", "loss": "bce",
         "epsilon": 4 / 255, "engine": "pytorch", "evidence": {"as_small": 0.3, "as_large": 0.2}},
        {"check": "flat_loss", "message": "the loss of FGSM barely moves around the inputs",
         "attack": "fgsm", "loss": "bce", "epsilon": None, "engine": None, "evidence": {}},
    ]  # fmt: skip
    return Evaluation(
        worst_case=worst,
        warnings=found if warnings else [],
        probes={"seconds": 1.5},
        checks={"probe_images": 4},
    )


CERTIFIED = {
    "settings": {"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.001, "confidence": 0.999,
                 "correction": "bonferroni", "images": 4, "radii": [0.0, 0.25]},
    "engines": {
        "pytorch": {"radii": [0.0, 0.25], "certified_dice": [0.8, 0.5],
                    "certified_share": [0.9, 0.6], "certified_any_share": [0.95, 0.7],
                    "abstain_share": [0.05, 0.05], "seconds": 12.5},
        ORT: {"error": "RuntimeError: out of <memory>", "seconds": 0.1},
    },
}  # fmt: skip


def full_report(warnings: bool = True) -> AuditReport:
    """make_report() with an evaluation, certification and a SEA cell, through JSON."""
    report = make_report()
    sea = AuditCell(
        id=AuditCell.make_id("sea", "bce", 4 / 255), attack="sea", loss="bce", epsilon=4 / 255,
        engines={"pytorch": _eval("pytorch", 0.58, 0.55, 0.3), ORT: _eval(ORT, 0.57, 0.5, 0.31)},
        ensemble={"members": ["apgd:masked_ce", "apgd:js"], "wins": [1, 3],
                  "winner_per_image": [1, 0, 1, 1]},
    )  # fmt: skip
    report.cells.append(sea)
    report.evaluation = _evaluation(warnings)
    report.certified = CERTIFIED
    return AuditReport.from_dict(report.to_dict())


@pytest.fixture(scope="module")
def report() -> AuditReport:
    return full_report()


def test_sections_come_early_in_page_order(report: AuditReport) -> None:
    ids = build_view(report).section_ids
    # first screen: the verdict, the engine x attack x ε matrix, then the warnings
    assert ids[:3] == ["verdict", "matrix", "evaluation-warnings"]
    assert ids.index("summary") < ids.index("worst-case") < ids.index("certified")
    assert ids.index("certified") < ids.index("curves")
    html = render_html(report)
    assert re.findall(r'<section id="([^"]+)">', html) == ids


def test_reports_without_the_sections_render_as_before() -> None:
    old = make_report()
    assert not set(NEW_IDS) & set(build_view(old).section_ids)
    md = render_markdown(old)
    assert "Worst case" not in md and "evaluation warning" not in md.lower()
    assert "Certified" not in render_html(old)
    rows = list(csv.DictReader(io.StringIO(render_csv(old))))
    assert {r["attack"] for r in rows} == {"clean", "pgd", "fgsm"}
    assert "evaluation" not in render_junit(old) and "Worst case" not in render_pr_summary(old)


def test_markdown_shows_warnings_worst_case_and_certified(report: AuditReport) -> None:
    md = render_markdown(report)
    assert "**2 evaluation warnings**: the attack numbers may overstate robustness." in md
    assert md.index("## Evaluation warnings") < md.index("## Summary per engine")
    # the message is escaped: no raw HTML, no table-breaking pipe
    assert "<script>" not in md
    assert "- `non_monotone_eps`: PGD on &lt;script&gt;alert(1)&lt;/script&gt; \\| x:" in md
    row = "| 4/255 | **`pytorch`** | **55.00%** | 50.00% | 35.00% | `pgd/bce` | 60.00% |"
    assert row in md
    assert "| 4/255 | `onnxruntime` | **54.50%** | 49.00% | 36.00% | `pgd/bce` |" in md
    assert "ε=4/255: 2 cells: `pgd/bce`, `fgsm/bce`" in md
    assert "`apgd:masked_ce` won 1 of 4 images; `apgd:js` won 3 of 4 images" in md
    assert "σ = 0.25" in md and "α = 0.001 (confidence 99.90%)" in md and "on 4 images" in md
    assert "| `pytorch` | 0.25 | 50.00% | 60.00% | 70.00% | 5.00% |" in md
    assert "| `onnxruntime` | — | error | RuntimeError: out of &lt;memory&gt; |" in md


def test_html_escapes_and_draws_the_certified_chart(report: AuditReport) -> None:
    html = render_html(report)
    assert "<script>" not in html
    assert "PGD on &lt;script&gt;alert(1)&lt;/script&gt; | x:" in html
    assert '<span class="badge warn">2 evaluation warnings</span>' in html
    assert 'title="attack pgd; loss bce; engine pytorch; ε 4/255; as_small = 0.3' in html
    chart = re.search(r'<figure class="chart-box" id="curve-certified-share">(.*?)</figure>',
                      html, re.S)  # fmt: skip
    assert chart and "Certified share vs radius" in chart.group(1)
    assert "pytorch: 0.25 → 60.00%" in chart.group(1)  # radius as a number, not in 1/255
    assert 'class="worst-case"' in html and 'class="certified"' in html


@pytest.mark.parametrize(
    ("warnings", "probes", "text"),
    [
        (False, True, "Evaluation checks passed (probes on 4 images): no warning."),
        (False, False, "Evaluation checks not run (checks were off)."),
    ],
)
def test_banner_without_warnings(warnings: bool, probes: bool, text: str) -> None:
    report = full_report(warnings)
    if not probes:
        report.evaluation.probes = None
    md = render_markdown(report)
    assert text.replace("Evaluation checks not run", "**Evaluation checks not run**") in md


def test_certification_that_failed_says_why() -> None:
    report = full_report()
    report.certified = {"settings": {"sigma": 0.5}, "error": "ValueError: no | GPU"}
    md = render_markdown(report)
    assert "Certification failed: ValueError: no \\| GPU" in md
    rows = [
        r for r in csv.DictReader(io.StringIO(render_csv(report))) if r["attack"] == "certified"
    ]
    assert [(r["status"], r["error"]) for r in rows] == [("error", "ValueError: no | GPU")]


def test_csv_has_worst_case_and_certified_rows(report: AuditReport) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    worst = {r["engine"]: r for r in rows if r["attack"] == "worst_case"}
    assert set(worst) == {"pytorch", ORT}
    assert worst["pytorch"]["attack_loss"] == "*" and worst["pytorch"]["dice"] == "0.55"
    assert worst[ORT]["cell_id"] == "worst_case/*/0.0156863"
    assert float(worst[ORT]["epsilon"]) == 4 / 255
    cert = [r for r in rows if r["attack"] == "certified"]
    assert [(r["engine"], r["epsilon"], r["certified_share"]) for r in cert[:2]] == [
        ("pytorch", "0.0", "0.9"),
        ("pytorch", "0.25", "0.6"),
    ]
    assert cert[2]["engine"] == ORT and cert[2]["status"] == "error"
    assert cert[2]["error"] == "RuntimeError: out of <memory>"


def _cases(xml: str) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.fromstring(xml).iter("testcase")}


def test_junit_warnings_fail_only_when_the_gate_failed_them(report: AuditReport) -> None:
    cases = _cases(render_junit(report))
    warned = [c for n, c in cases.items() if n.startswith("evaluation warning")]
    assert len(warned) == 2 and all(c.find("failure") is None for c in warned)
    assert EVIL in warned[0].find("system-out").text
    gated = full_report()
    gated.verdict["passed"] = False
    gated.verdict["outcomes"].append(
        {"rule": "no gradient-masking warning", "metric": "evaluation_warnings", "passed": False}
    )
    root = ET.fromstring(render_junit(gated))
    warned = [c for c in root.iter("testcase") if c.get("name").startswith("evaluation warning")]
    failures = [c.find("failure") for c in warned]
    assert len(failures) == 2 and failures[0].get("message") == EVIL
    assert failures[1].get("type") == "EvaluationWarning"
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == 2 + 2  # two failed rules, two warnings
    assert int(suite.get("tests")) == len(list(root.iter("testcase")))


def test_junit_without_verdict_lists_worst_case_and_certified(report: AuditReport) -> None:
    report = full_report()
    report.verdict = None
    xml = render_junit(report)
    cases = _cases(xml)
    assert "Dice 55.00%" in cases["worst_case/*/0.0156863"].find("system-out").text
    assert "certified: pytorch" in cases and cases[f"certified: {ORT}"].find("error") is not None
    suite = ET.fromstring(xml).find("testsuite")
    assert int(suite.get("tests")) == len(cases)


def test_junit_validates(report: AuditReport) -> None:
    xmlschema = pytest.importorskip("xmlschema")
    from test_reports_junit import XSD

    schema = xmlschema.XMLSchema(XSD)
    schema.validate(render_junit(report))
    no_verdict = full_report()
    no_verdict.verdict = None
    schema.validate(render_junit(no_verdict))


def test_pr_summary_line(report: AuditReport) -> None:
    summary = render_pr_summary(report)
    line = (
        "Worst case over every attack at ε=4/255: `pytorch` Dice 55.00%, `onnxruntime` Dice "
        "54.50%; **2 evaluation warnings**: the attack numbers may overstate robustness."
    )
    assert line in summary
    assert summary.index("Worst case") < summary.index("per attack and ε")
    passed = render_pr_summary(full_report(warnings=False))
    assert "54.50%; evaluation checks passed (probes on 4 images)." in passed


def test_terminal_shows_worst_case_warnings_and_certified(report: AuditReport) -> None:
    console = Console(record=True, width=250)
    for table in summary_tables(report):
        console.print(table)
    text = console.export_text()
    assert re.search(r"worst case\s+\*\s+4/255\s+55\.00\s+54\.50", text)
    assert f"evaluation warning: {EVIL}" in text
    assert "evaluation warning: the loss of FGSM barely moves around the inputs" in text
    assert re.search(r"pytorch\s+0\.25\s+50\.00\s+60\.00\s+5\.00", text)
    assert f"certification of {ORT} failed: RuntimeError: out of <memory>" in text
    report = full_report()
    report.evaluation.warnings[1]["message"] = "[red]not markup[/]"
    console = Console(record=True, width=250)
    for table in summary_tables(report):
        console.print(table)
    assert "evaluation warning: [red]not markup[/]" in console.export_text()
