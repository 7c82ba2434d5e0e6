"""The evaluation-strength options through the CLI: bad ensemble members and certification
settings are one-line errors with exit 2 before any work; a certified audit gated on the
certified section; the masking warnings failing a policy that asks for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.cli.main import app

runner = CliRunner()
QUICK = ["--limit", "1", "--epsilons", "8/255", "--steps", "2", "--no-bench"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attacks", "sea", "--sea-members", "apgd:nope"], "--sea-members: unknown loss 'nope'"),
        (["--attacks", "sea", "--sea-members", "asma"], "must be an untargeted Linf attack"),
        (["--attacks", "sea", "--sea-members", "sea"], "unknown member attack 'sea'"),
        (["--certify", "--certify-sigma", "0"], "certify_sigma must be > 0"),
        (["--probe-images", "0"], "--probe-images"),
    ],
)
def test_bad_evaluation_options_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), *QUICK, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o" / "report.json").exists()


def test_certified_audit_is_gated_on_the_certified_section(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[policy]\nengine_health = "off"\n\n'
        '[[rules]]\nmetric = "certified_any_share"\nattack = "certified"\nepsilon = 0.0\n'
        "min = 1.01\n"  # impossible: the gate must fail (exit 1) on the measured share
    )
    out = tmp_path / "o"
    args = ["--attacks", "fgsm", "--engines", "pytorch", "--certify", "--certify-n", "8",
            "--certify-images", "1", "--no-checks", "--policy", str(policy)]  # fmt: skip
    res = runner.invoke(app, ["audit", "--out", str(out), *QUICK, *args])
    assert res.exit_code == 1, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["certified"]["settings"]["n"] == 8
    assert list(report["certified"]["engines"]) == ["pytorch"]
    outcome = report["verdict"]["outcomes"][0]
    assert outcome["n_checked"] == 1 and not outcome["passed"]
    assert "certified" in (out / "report.md").read_text().lower()
