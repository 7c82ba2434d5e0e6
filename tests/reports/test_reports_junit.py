"""JUnit XML (validated against the Jenkins/Ant junit-10 shape) and the PR summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from segshield.audits.results import AuditCell, AuditReport, EngineEval
from segshield.reports.junit import render_junit
from segshield.reports.summary import render_pr_summary

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
    xml = render_junit(load("fail"))
    root = ET.fromstring(xml)
    suite = suite_of(xml)
    assert suite.get("name") == "segshield gate: strict <release>"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "2", "0")
    assert suite.get("skipped") == "0"
    assert (root.get("tests"), root.get("failures")) == ("6", "2")
    assert suite.get("timestamp") == "2026-11-21T15:33:44"
    assert float(suite.get("time")) == pytest.approx(88.76)
    cases = suite.findall("testcase")
    assert len(cases) == 6
    assert {c.get("classname") for c in cases} == {"segshield.gate"}
    failures = [(c, c.find("failure")) for c in cases if c.find("failure") is not None]
    assert len(failures) == 2
    case, failure = failures[0]
    assert case.get("name") == "PGD and BIM Dice at eps 8/255 stay >= 0.80 on every engine <strict>"
    assert failure.get("type") == "GateRuleFailed"
    message = failure.get("message")
    assert "measured 0.735559" in message
    assert "threshold min 0.8" in message
    assert "at bim/bce/0.0313725 on pytorch" in message
    assert "<script>alert('pwned')</script>" in failure.text  # escaped in XML, intact here
    unverified = failures[1][1].get("message")
    assert "could not be verified" in unverified and "threshold min 0.9" in unverified


def test_passing_verdict_has_no_failures() -> None:
    suite = suite_of(render_junit(load("pass")))
    assert (suite.get("tests"), suite.get("failures")) == ("5", "0")
    assert not suite.findall(".//failure")
    assert all(c.find("system-out") is not None for c in suite.findall("testcase"))


def test_failed_verdict_without_failed_rules_still_fails() -> None:
    report = load("pass")
    report.verdict = {"policy_name": "p", "passed": False, "outcomes": []}
    suite = suite_of(render_junit(report))
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")


def test_without_verdict_cells_are_test_cases() -> None:
    suite = suite_of(render_junit(no_verdict("fail")))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("13", "0", "2")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == 13 and "clean" in cases
    error = cases["pgd/bce/0.0313725"].find("error")
    assert error is not None and error.get("type") == "AuditCellError"
    assert "<script>" in error.get("message")
    assert cases["bim/bce/0.0313725"].find("error") is not None
    assert cases["fgsm/bce/0.0313725"].find("error") is None


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


def test_pr_summary_fail() -> None:
    text = render_pr_summary(load("fail"))
    assert text.splitlines()[0].startswith("**segshield gate: ❌ FAIL**")
    assert "4 of 6 rules passed" in text
    assert "&lt;strict&gt;" in text and "<strict>" not in text  # markup shown, not rendered
    assert "<script>" not in text
    assert "| 0.7356 | ≥ 0.8 | bim/bce/0.0313725 on pytorch |" in text
    assert "| BIM | `onnxruntime` | 93.20% | 90.86% | 88.37% | 83.38% | — |" in text
    assert "| PGD | `pytorch` | 93.20% | 90.85% | 88.47% | 83.62% | failed |" in text
    assert "1 of 12 attack cells failed to run." in text
    assert "http" not in text


def test_pr_summary_pass_and_no_verdict() -> None:
    text = render_pr_summary(load("pass"))
    assert text.startswith("**segshield gate: ✅ PASS**")
    assert "Failed rule" not in text
    dice_rows = [
        ln for ln in text.splitlines() if ln.startswith("| FGSM") or ln.startswith("| PGD")
    ]
    assert len(dice_rows) == 4  # 2 attacks shown here x 2 engines
    assert "| Attack | Engine | clean | 1/255 | 2/255 | 4/255 | 8/255 |" in text
    assert render_pr_summary(no_verdict("pass")).startswith("**segshield audit: no verdict**")
