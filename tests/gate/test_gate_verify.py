"""The gate refuses a report that was changed after it was written or holds impossible
values: `segshield gate` and `segshield audit --policy` exit 2 with one line naming the first
problem and the count; the untouched report passes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.api import gate_report, write_reports
from segshield.audits import AuditConfig, AuditReport, run_audit
from segshield.cli.main import app
from segshield.errors import ReportError
from segshield.gate import policy_from_dict
from segshield.gate.verify import UNVERIFIED, VERIFIED, read_verified_report

FAST = {
    "limit": 2,
    "epsilons": (2 / 255, 8 / 255),
    "steps": 2,
    "engines": ("pytorch",),
    "bench": False,
    "n_boot": 20,
}
POLICY = """
[policy]
name = "tiny"

[[rules]]
name = "clean Dice"
metric = "dice"
attack = "clean"
min = 0.1

[[rules]]
name = "FGSM Dice"
metric = "dice"
attack = "fgsm"
min = 0.1
"""
DATA = Path(__file__).parents[1] / "reports" / "data"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small audit's report.json, as `segshield audit` writes it."""
    out = tmp_path_factory.mktemp("audit")
    report = run_audit(AuditConfig(out, attacks=("fgsm",), **FAST))
    return write_reports(report, out)["json"]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def _edited(written: Path, tmp_path: Path, edit) -> Path:
    raw = json.loads(written.read_text())
    edit(raw)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(raw, indent=2))
    return path


def _gate(path: Path, policy: Path):
    return CliRunner().invoke(app, ["gate", str(path), "--policy", str(policy)])


@pytest.mark.parametrize("name", ["report_pass", "report_fail", "report_classify"])
def test_the_fixtures_are_verified(name: str) -> None:
    assert read_verified_report(DATA / f"{name}.json")[1] == VERIFIED


def test_the_written_report_is_verified_and_passes(written: Path, policy: Path) -> None:
    raw = json.loads(written.read_text())
    assert raw["integrity"]["algorithm"] == "sha256"
    _, status = read_verified_report(written)
    assert status == VERIFIED
    result = _gate(written, policy)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def _set_dice(value: float):
    def edit(raw: dict) -> None:
        raw["cells"][0]["engines"]["pytorch"]["metrics"]["dice"] = value

    return edit


def _add_tp(raw: dict) -> None:
    raw["cells"][0]["engines"]["pytorch"]["metrics"]["tp"] += 7


def _hash_only(raw: dict) -> None:
    raw["cells"][0]["engines"]["pytorch"]["metrics"]["loss"] += 0.01


@pytest.mark.parametrize(
    ("edit", "first"),
    [
        (_set_dice(0.99), "metrics.dice = 0.99 but the confusion counts give"),
        (_set_dice(1.7), "metrics.dice = 1.7 is outside [0, 1]"),
        (_add_tp, "but the confusion counts give"),
        (_hash_only, "content hash mismatch"),
    ],
)
def test_an_edited_report_is_refused_with_exit_2(
    written: Path, policy: Path, tmp_path: Path, edit, first: str
) -> None:
    path = _edited(written, tmp_path, edit)
    result = _gate(path, policy)
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    # one line: the count, then the first problem
    assert first in line.split("integrity problem(s): ", 1)[1][:160], line
    assert "PASS" not in result.output and "FAIL" not in result.output


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_set_dice(0.99), "metrics.dice = 0.99 but the confusion counts give"),
        (_set_dice(1.7), "metrics.dice = 1.7 is outside [0, 1]"),
        (_add_tp, "but the confusion counts give"),
    ],
)
def test_an_edit_with_the_hash_removed_is_still_refused(
    written: Path, policy: Path, tmp_path: Path, edit, named: str
) -> None:
    """Dropping the integrity entry (an "older" report) does not let an edit through: the
    values are checked against the stored confusion counts."""

    def both(raw: dict) -> None:
        edit(raw)
        del raw["integrity"]

    path = _edited(written, tmp_path, both)
    result = _gate(path, policy)
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert named in line and "integrity problem(s)" in line


def test_library_gate_raises_report_error_naming_count(written: Path, tmp_path: Path) -> None:
    path = _edited(written, tmp_path, _set_dice(1.7))
    with pytest.raises(ReportError, match=r"refused, \d+ integrity problem\(s\): .*more\)"):
        gate_report(path, policy_from_dict({"rules": [{"metric": "dice", "min": 0}]}))


def test_a_report_without_integrity_is_gated_as_unverified(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        _, status = read_verified_report(DATA / "report_v1.json")
    assert status == UNVERIFIED
    assert "unverified" in caplog.text


def test_audit_with_a_policy_refuses_an_impossible_report(
    tmp_path: Path, policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`segshield audit --policy` gates the report as written: an audit that produced an
    impossible value (here injected) is refused with exit 2, not passed."""
    import segshield.audits

    def bad_audit(config, progress=None, command="", **inputs):
        report = AuditReport.from_dict(json.loads((DATA / "report_pass.json").read_text()))
        report.clean["pytorch"].metrics.dice = 1.7
        report.verdict = None
        return report

    monkeypatch.setattr(segshield.audits, "run_audit", bad_audit)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["audit", "--out", str(out), "--policy", str(policy)])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "clean[pytorch].metrics.dice = 1.7 is outside [0, 1]" in line
    assert (out / "report.json").is_file()  # kept for inspection, without a verdict
    assert json.loads((out / "report.json").read_text())["verdict"] is None
