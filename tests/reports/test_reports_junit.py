"""JUnit XML (validated against the Jenkins/Ant junit-10 shape) and the PR summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from segshield.reports.format import format_percent
from segshield.reports.junit import render_junit
from segshield.reports.summary import render_pr_summary
from segshield.results import AuditCell, AuditReport, EngineEval, Status

DATA = Path(__file__).parent / "data"
XSD = DATA / "junit.xsd"


def load(name: str) -> AuditReport:
    return AuditReport.from_dict(json.loads((DATA / f"report_{name}.json").read_text()))


@pytest.fixture(scope="module")
def schema():  # -> xmlschema.XMLSchema
    xmlschema = pytest.importorskip(
        "xmlschema", reason="xmlschema is not installed (pip install xmlschema, [dev] extra)"
    )
    return xmlschema.XMLSchema(XSD)


def suite_of(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def no_verdict(name: str) -> AuditReport:
    report = load(name)
    report.verdict = None
    return report


@pytest.mark.parametrize(
    "report",
    [
        load("pass"),
        load("fail"),
        no_verdict("pass"),
        no_verdict("fail"),
        AuditReport(provenance={}, config={}, model={}, dataset={}),
    ],
    ids=["pass", "fail", "cells-pass", "cells-fail", "empty"],
)
def test_validates_against_junit_xsd(schema, report: AuditReport) -> None:
    schema.validate(render_junit(report))


def test_schema_rejects_a_malformed_document(schema) -> None:
    # Negative control: the schema does bite (a testcase needs a name, counts are integers).
    assert not schema.is_valid(
        '<testsuites><testsuite name="s" tests="1"><testcase/></testsuite></testsuites>'
    )
    assert not schema.is_valid('<testsuites><testsuite name="s" tests="nan"/></testsuites>')


def test_failed_rules_become_failures() -> None:
    report = load("fail")
    xml = render_junit(report)
    root = ET.fromstring(xml)
    suite = suite_of(xml)
    outcomes = report.verdict["outcomes"]
    n, n_failed = str(len(outcomes)), str(sum(not o["passed"] for o in outcomes))
    assert suite.get("name") == "segshield gate: strict <release>"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (n, n_failed, "0")
    assert n_failed == "2"
    assert suite.get("skipped") == "0"
    assert (root.get("tests"), root.get("failures")) == (n, n_failed)
    started = report.provenance["started_at"][:19]
    assert suite.get("timestamp") == started
    assert float(suite.get("time")) == pytest.approx(report.provenance["seconds"])
    cases = suite.findall("testcase")
    assert len(cases) == len(outcomes)
    assert {c.get("classname") for c in cases} == {"segshield.gate"}
    failures = [(c, c.find("failure")) for c in cases if c.find("failure") is not None]
    assert len(failures) == 2
    case, failure = failures[0]
    assert case.get("name") == "FGSM Dice at 8/255 stays >= 0.95 <strict>"
    assert failure.get("type") == "GateRuleFailed"
    message = failure.get("message")
    first = next(o for o in outcomes if not o["passed"])
    assert f"measured {first['worst_value']:.6g}" in message
    assert "threshold min 0.95" in message
    assert f"at {first['worst_where']}" in message
    assert "bad input <b>here</b>" in failure.text  # escaped in XML, intact here
    unverified = failures[1][1].get("message")
    assert "tensorrt-fp16" in failures[1][1].text and "threshold min 0" in unverified


def test_passing_verdict_has_no_failures() -> None:
    suite = suite_of(render_junit(load("pass")))
    n = str(len(load("pass").verdict["outcomes"]))
    assert (suite.get("tests"), suite.get("failures")) == (n, "0")
    assert not suite.findall(".//failure")
    assert all(c.find("system-out") is not None for c in suite.findall("testcase"))


def test_failed_verdict_without_failed_rules_still_fails() -> None:
    report = load("pass")
    report.verdict = {"policy_name": "p", "passed": False, "outcomes": []}
    suite = suite_of(render_junit(report))
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")


def test_without_verdict_cells_are_test_cases() -> None:
    report = no_verdict("fail")
    suite = suite_of(render_junit(report))
    n = str(1 + len(report.cells))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (n, "0", "2")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == 1 + len(report.cells) and "clean" in cases
    bad = next(c for c in report.cells if c.status != Status.OK)
    error = cases[bad.id].find("error")
    assert error is not None and error.get("type") == "AuditCellError"
    assert "<script>" in error.get("message")
    assert cases["fgsm/bce/0.0313725"].find("error") is not None  # ort-int8 failed there
    assert cases["fgsm/bce/0.00784314"].find("error") is None


def test_control_characters_do_not_break_the_xml(schema) -> None:
    report = AuditReport(provenance={}, config={}, model={}, dataset={})
    report.cells.append(
        AuditCell(
            id="pgd/bce/0.01",
            attack="pgd",
            loss="bce",
            epsilon=0.01,
            status="error",
            error="\x1b[31mred\x1b[0m\x00",
            engines={"pytorch": EngineEval("pytorch")},
        )
    )
    xml = render_junit(report)
    schema.validate(xml)
    assert "red" in ET.fromstring(xml).find(".//error").get("message")


# ----------------------------------------------------------------------------- PR summary


def _row(report: AuditReport, attack: str, loss: str, engine: str) -> str:
    """The PR summary's Dice row of one attack, loss and engine, from the stored values."""
    cells = sorted(
        (c for c in report.cells if (c.attack, c.loss) == (attack, loss)), key=lambda c: c.epsilon
    )
    values = [format_percent(report.clean[engine].metrics.dice)]
    for c in cells:
        ev = c.engines.get(engine)
        ok = c.status == Status.OK and ev is not None and ev.ok
        values.append(format_percent(ev.metrics.dice) if ok else "failed")
    return f"| {attack.upper()} ({loss}) | `{engine}` | " + " | ".join(values)


def test_pr_summary_fail() -> None:
    report = load("fail")
    text = render_pr_summary(report)
    outcomes = report.verdict["outcomes"]
    n_ok = sum(o["passed"] for o in outcomes)
    assert text.splitlines()[0].startswith("**segshield gate: ❌ FAIL**")
    assert f"{n_ok} of {len(outcomes)} rules passed" in text
    assert "&lt;strict&gt;" in text and "<strict>" not in text  # markup shown, not rendered
    assert "<script>" not in text
    first = next(o for o in outcomes if not o["passed"])
    # the worst place with its cell written as people read it, not as a cell id
    assert first["worst_where"] == "fgsm/dice/0.0313725 on pytorch"
    assert f"| {first['worst_value']:.4g} | ≥ 0.95 | FGSM · dice · ε=8/255 on pytorch |" in text
    assert _row(report, "fgsm", "bce", "ort-fp32") in text
    assert _row(report, "pgd", "bce", "pytorch").endswith("failed")
    assert _row(report, "pgd", "bce", "pytorch") in text
    assert f"1 of {len(report.cells)} attack cells failed to run." in text
    assert "http" not in text


def test_pr_summary_pass_and_no_verdict() -> None:
    report = load("pass")
    text = render_pr_summary(report)
    assert text.startswith("**segshield gate: ✅ PASS**")
    assert "Failed rule" not in text
    dice_rows = [
        ln for ln in text.splitlines() if ln.startswith("| FGSM") or ln.startswith("| PGD")
    ]
    assert len(dice_rows) == 2 * 2 * 3  # 2 attacks x 2 losses x 3 ok engines
    assert "| Attack | Engine | clean | 2/255 | 8/255 |" in text
    assert render_pr_summary(no_verdict("pass")).startswith("**segshield audit: no verdict**")
