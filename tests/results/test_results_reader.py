"""Reading report.json: schema 2 round-trips; schema 1 is converted on the way in."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from segshield.errors import ReportError
from segshield.results import AuditReport, TaskKind, report_from_dict

DATA = Path(__file__).parents[1] / "reports" / "data"


@pytest.fixture(scope="module")
def v1() -> dict:
    return json.loads((DATA / "report_v1.json").read_text())


def test_schema_1_binary_report_is_read(v1: dict) -> None:
    report = report_from_dict(v1)
    assert report.task == TaskKind.BINARY and report.schema_version == 2
    ev = report.clean["pytorch"]
    assert ev.metrics.dice == v1["clean"]["pytorch"]["metrics"]["dice"]
    assert ev.metrics.activation == "sigmoid"
    raw_per_image = v1["clean"]["pytorch"]["per_image"]  # this trimmed fixture stores none
    assert (ev.per_image is None) == (raw_per_image is None)
    for cell, raw_cell in zip(report.cells, v1["cells"], strict=True):
        assert cell.id == raw_cell["id"] and cell.status == raw_cell["status"]
        if raw_cell["perturbation"]:
            assert cell.perturbation.linf_max == raw_cell["perturbation"]["linf_max"]
    assert [e.name for e in report.engines] == [e["name"] for e in v1["engines"]]


def test_schema_1_multiclass_report_is_softmax(v1: dict) -> None:
    raw = copy.deepcopy(v1)
    raw["config"]["num_classes"] = 3
    report = report_from_dict(raw)
    assert report.task == TaskKind.MULTICLASS
    assert {ev.metrics.activation for ev in report.clean.values() if ev.metrics} == {"softmax"}


@pytest.mark.parametrize("pass_fixture", ["report_pass.json", "report_classify.json"])
def test_schema_2_round_trips(pass_fixture: str) -> None:
    raw = json.loads((DATA / pass_fixture).read_text())
    report = AuditReport.from_dict(raw)
    assert report.schema_version == 2
    assert json.loads(json.dumps(report.to_dict())) == report.to_dict()
    assert AuditReport.from_dict(report.to_dict()).to_dict() == report.to_dict()


def test_unknown_versions_and_kinds_are_refused(v1: dict) -> None:
    with pytest.raises(ReportError, match="schema_version 7"):
        report_from_dict({**v1, "schema_version": 7})
    with pytest.raises(ReportError, match="kind"):
        report_from_dict({**v1, "kind": "segshield.classifier_audit"})
