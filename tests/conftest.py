"""Shared fixtures: one real end-to-end `segshield audit` through the CLI (bundled model, real
nuclei tiles, real ONNX Runtime), reused by the tests that read its report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.cli.main import app

E2E_ARGS = [
    "--limit",
    "2",
    "--epsilons",
    "2/255,8/255",
    "--steps",
    "3",
    "--batch-size",
    "2",
]


@dataclass
class CliAudit:
    exit_code: int
    output: str
    out_dir: Path
    report: dict


@pytest.fixture(scope="session")
def cli_audit(tmp_path_factory: pytest.TempPathFactory) -> CliAudit:
    out = tmp_path_factory.mktemp("e2e")
    result = CliRunner().invoke(app, ["audit", "--out", str(out), *E2E_ARGS])
    report_path = out / "report.json"
    assert report_path.is_file(), result.output
    return CliAudit(result.exit_code, result.output, out, json.loads(report_path.read_text()))
