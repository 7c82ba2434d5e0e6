"""The GitHub Actions example uses the segshield action (action.yml) with inputs the action
declares, and its audit step really runs: the action's run steps with the example's `with:`
values (install skipped: this checkout's .venv), in a workspace laid out like a checkout."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from test_cli_action import load_action, run_action  # tests/cli is on sys.path (rootdir-less)

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "examples" / "github-actions" / "segshield-audit.yml"


def _steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["audit"]["steps"]


def _step(name_part: str) -> dict:
    return next(s for s in _steps() if name_part in s.get("name", ""))


def test_workflow_wires_the_action() -> None:
    steps = _steps()
    assert steps[0]["uses"].startswith("actions/checkout@")  # `uses: ./` needs the checkout
    audit = _step("Audit")
    assert audit["uses"] == "./"
    declared = load_action()["inputs"]
    assert set(audit["with"]) <= set(declared), "the example passes only declared inputs"
    assert (REPO / audit["with"]["policy"]).is_file()
    # The download lands where the action looks for the baseline, under the uploaded name.
    download = shlex.split(_step("Download")["run"].split("gh run download", 1)[1])
    upload = _step("Upload")
    assert download[download.index("--name") + 1] == upload["with"]["name"]
    base_dir = download[download.index("--dir") + 1]
    assert audit["with"]["baseline"] == f"{base_dir}/report.json"
    assert steps.index(_step("Download")) < steps.index(audit)
    # What is uploaded is what the action writes into `out`; the base is the uploaded report.json.
    paths = upload["with"]["path"].split()
    assert all(p.startswith(audit["with"]["out"] + "/") for p in paths)
    assert f"{audit['with']['out']}/report.json" in paths
    junit = _step("Publish")
    assert junit["with"]["report_paths"] == "${{ steps.segshield.outputs.junit }}"
    assert audit["id"] == "segshield"


@pytest.mark.slow
def test_workflow_audit_step_runs(tmp_path: Path) -> None:
    audit = _step("Audit")
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "policy.toml", tmp_path / "examples" / "policy.toml")
    # A settings file keeps the audit small; the inputs themselves are the workflow's.
    (tmp_path / "segshield.toml").write_text(
        '[audit]\nlimit = 1\nattacks = ["fgsm"]\nepsilons = ["8/255"]\nn_boot = 50\n'
        'engines = ["pytorch", "ort-fp32"]\nbench = false\nchecks = false\n'
    )
    run = run_action({**audit["with"], "install": "false"}, tmp_path)
    # 1 = the gate failed the job, as designed: the example policy's PGD rules match nothing in
    # this one-attack audit, and an unverifiable rule never passes.
    assert run.exit_code in (0, 1), run.log
    assert run.outputs["verdict"] == {0: "pass", 1: "fail"}[run.exit_code]
    assert "--policy examples/policy.toml --strict" in run.log
    # No base/ on a push to main: the comparison is skipped, the reports are all there.
    assert run.outputs["comparison-md"] == ""
    for path in _step("Upload")["with"]["path"].split():
        if "compare/" not in path:
            assert (tmp_path / path).is_file(), path
    assert run.outputs["junit"] == "audit/junit.xml"
    assert run.summary == (tmp_path / "audit" / "summary.md").read_text()
