"""report.json writing and reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segshield.engines.records import EngineRecord
from segshield.errors import ReportError
from segshield.reports import read_report, write_json
from segshield.results import AuditCell, AuditReport, EngineEval, Metrics, Perturbation


def make_report() -> AuditReport:
    """One engine, clean evaluation, one ok cell with a NaN metric, one failed cell."""
    return AuditReport(
        provenance={"seed": 0, "versions": {"segshield": "0.1.0"}},
        config={"losses": ["bce"]},
        model={"name": "unet"},
        dataset={"name": "nuclei"},
        engines=[EngineRecord(name="pytorch", kind="torch")],
        clean={"pytorch": EngineEval("pytorch", metrics=Metrics(dice=0.8, loss=0.2))},
        cells=[
            AuditCell(
                id=AuditCell.make_id("pgd", "bce", 4 / 255),
                attack="pgd",
                loss="bce",
                epsilon=4 / 255,
                params={"steps": 10},
                perturbation=Perturbation(ssim_mean=0.98, linf_max=4 / 255),
                engines={
                    "pytorch": EngineEval(
                        "pytorch",
                        metrics=Metrics(dice=0.5, loss=float("nan")),
                        attack_success=0.375,
                    )
                },
            ),
            AuditCell(
                id="fgsm/bce/0.0313725",
                attack="fgsm",
                loss="bce",
                epsilon=8 / 255,
                status="error",
                error="boom",
            ),
        ],
        verdict={"policy_name": "p", "passed": True, "outcomes": []},
    )


def test_roundtrip(tmp_path: Path) -> None:
    report = make_report()
    path = write_json(report, tmp_path / "sub" / "report.json")
    assert path == tmp_path / "sub" / "report.json"
    again = read_report(path)
    assert again.to_dict() == report.to_dict()
    assert isinstance(again.cells[0].engines["pytorch"], EngineEval)
    assert again.cells[1].status == "error"
    assert not list(path.parent.glob("*.tmp"))


def test_written_json_is_strict_sorted_and_pretty(tmp_path: Path) -> None:
    path = write_json(make_report(), tmp_path / "report.json")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text
    raw = json.loads(text)
    assert raw["cells"][0]["engines"]["pytorch"]["metrics"]["loss"] is None
    assert text == json.dumps(raw, indent=2, sort_keys=True) + "\n"


def test_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old", encoding="utf-8")
    write_json(make_report(), path)
    assert read_report(path).model == {"name": "unet"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"nope\.json: report file not found"):
        read_report(tmp_path / "nope.json")


def test_invalid_json_names_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"kind": "segshield.audit",', encoding="utf-8")
    with pytest.raises(ReportError) as info:
        read_report(path)
    assert str(path) in str(info.value)
    assert "not valid JSON" in str(info.value)


def test_nan_token_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    raw = make_report().to_dict()
    raw["provenance"]["x"] = float("nan")
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ReportError, match="not strict JSON"):
        read_report(path)


def test_wrong_schema_version(tmp_path: Path) -> None:
    raw = make_report().to_dict()
    raw["schema_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ReportError) as info:
        read_report(path)
    assert str(path) in str(info.value)
    assert "schema_version 99" in str(info.value)


def test_not_a_report(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(ReportError, match="not a segshield audit report"):
        read_report(path)


def test_malformed_report(tmp_path: Path) -> None:
    raw = make_report().to_dict()
    del raw["model"]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ReportError, match=r"partial\.json: malformed audit report"):
        read_report(path)
