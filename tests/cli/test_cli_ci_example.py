"""The GitHub Actions example runs the same segshield commands as here, in the same order."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from typer.testing import CliRunner

from segshield.cli.main import app

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "examples" / "github-actions" / "segshield-audit.yml"


def _segshield_commands() -> list[list[str]]:
    commands = []
    for line in WORKFLOW.read_text().splitlines():
        m = re.match(r"\s*(?:run:\s*)?(segshield\s.+)$", line)
        if m:
            commands.append(shlex.split(m.group(1))[1:])
    return commands


def test_workflow_commands_run(tmp_path: Path, monkeypatch) -> None:
    commands = _segshield_commands()
    assert [c[0] for c in commands] == ["audit", "report", "report", "report", "compare"]
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "policy.toml", tmp_path / "examples" / "policy.toml")
    # A settings file keeps the audit small; the commands themselves are the workflow's.
    (tmp_path / "segshield.toml").write_text(
        '[audit]\nlimit = 1\nepsilons = ["2/255", "8/255"]\nsteps = 2\nn_boot = 50\n'
        'engines = ["pytorch", "ort-fp32"]\nbench = false\n'
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    audit = runner.invoke(app, commands[0])
    assert audit.exit_code in (0, 1), audit.output  # 1 = the gate failed the job, as designed
    assert ("PASS" in audit.output) == (audit.exit_code == 0)
    for args in commands[1:-1]:
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    for name in ("report.json", "report.md", "report.html", "junit.xml", "summary.md"):
        assert (tmp_path / "audit" / name).is_file(), name
    # The compare step runs when the main branch's report was downloaded into base/.
    (tmp_path / "base").mkdir()
    shutil.copy(tmp_path / "audit" / "report.json", tmp_path / "base" / "report.json")
    res = runner.invoke(app, commands[-1])
    assert res.exit_code == 0, res.output
    assert (
        (tmp_path / "compare" / "comparison.md")
        .read_text()
        .startswith("**segshield compare: 0 significant Dice drops")
    )
