"""The CLI through typer's CliRunner: the real audit, gate exit codes, one error boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.cli.main import app

runner = CliRunner()


def _policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(body)
    return path


def test_audit_prints_summary_and_writes_reports(cli_audit) -> None:
    assert cli_audit.exit_code == 0, cli_audit.output
    assert "engine ort-int8: runs on CPUExecutionProvider" in cli_audit.output
    assert "Dice (%) of unet_nuclei" in cli_audit.output and "pgd" in cli_audit.output
    for name in ("report.json", "report.md", "engines/model.onnx", "engines/manifest.json"):
        assert (cli_audit.out_dir / name).is_file(), name
    assert not (cli_audit.out_dir / "engines" / "model.onnx.data").exists()
    md = (cli_audit.out_dir / "report.md").read_text()
    assert "8/255" in md and "Dice" in md
    assert cli_audit.report["provenance"]["command"].startswith("segshield audit")


def test_gate_passes_and_fails_with_exit_codes(cli_audit, tmp_path: Path) -> None:
    report = str(cli_audit.out_dir / "report.json")
    lenient = _policy(tmp_path, '[[rules]]\nmetric = "dice"\nattack = "clean"\nmin = 0.5\n')
    ok = runner.invoke(app, ["gate", report, "--policy", str(lenient)])
    assert ok.exit_code == 0, ok.output
    assert "PASS" in ok.output
    strict = _policy(
        tmp_path,
        '[[rules]]\nname = "pgd must not move Dice"\nmetric = "attack_success"\n'
        'attack = "pgd"\nmax = 0.0\n',
    )
    bad = runner.invoke(app, ["gate", report, "--policy", str(strict)])
    assert bad.exit_code == 1, bad.output
    assert "FAIL" in bad.output and "pgd must not move Dice" in bad.output
    # The gate prints the worst value over every engine the rule selects (engine = "*").
    measured = max(
        ev["attack_success"]
        for c in cli_audit.report["cells"]
        if c["attack"] == "pgd"
        for ev in c["engines"].values()
        if ev.get("attack_success") is not None
    )
    assert f"{measured:.4f}" in bad.output  # the measured value is printed


def test_gate_names_bad_policy_keys(cli_audit, tmp_path: Path) -> None:
    pol = _policy(tmp_path, '[[rules]]\nmetric = "dcie"\nmin = 0.5\nthreshhold = 1\n')
    res = runner.invoke(app, ["gate", str(cli_audit.out_dir / "report.json"), "--policy", str(pol)])
    assert res.exit_code == 2
    assert "dcie" in res.output and "threshhold" in res.output


def test_gate_on_missing_or_corrupt_report(tmp_path: Path) -> None:
    pol = _policy(tmp_path, '[[rules]]\nmetric = "dice"\nmin = 0.5\n')
    res = runner.invoke(app, ["gate", str(tmp_path / "none.json"), "--policy", str(pol)])
    assert res.exit_code == 2 and "none.json" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = runner.invoke(app, ["gate", str(bad), "--policy", str(pol)])
    assert res.exit_code == 2 and "bad.json" in res.output


def test_audit_with_failing_policy_exits_1(tmp_path: Path) -> None:
    pol = _policy(tmp_path, '[[rules]]\nmetric = "dice"\nattack = "fgsm"\nmin = 0.999\n')
    res = runner.invoke(
        app,
        [
            "audit",
            "--out",
            str(tmp_path / "o"),
            "--limit",
            "1",
            "--attacks",
            "fgsm",
            "--epsilons",
            "8/255",
            "--engines",
            "pytorch",
            "--policy",
            str(pol),
        ],
    )
    assert res.exit_code == 1, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["verdict"]["passed"] is False
    assert "FAIL" in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/definitely/not/here"], "does not exist"),
        (["--attacks", "fgsm,nope"], "unknown attack"),
        (["--losses", "mse"], "mse"),
        (["--epsilons", "2/0"], "--epsilons"),
        (["--engines", "pytorch,tensorrt-9"], "unknown engine"),
    ],
)
def test_audit_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["audit", "--out", str(tmp_path), "--limit", "1", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_audit_refuses_pickled_model(tmp_path: Path) -> None:
    import torch

    from segshield.models import unet

    path = tmp_path / "whole.pt"
    torch.save(unet(base_width=2, depth=1), path)
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), "--weights", str(path)])
    assert res.exit_code == 2
    assert "refusing" in res.output and "--trust-pickle" in res.output


def test_report_rerenders_markdown(cli_audit, tmp_path: Path) -> None:
    out = tmp_path / "again.md"
    res = runner.invoke(app, ["report", str(cli_audit.out_dir / "report.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == (cli_audit.out_dir / "report.md").read_text()


def test_train_writes_weights_and_card(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "train",
            "--out",
            str(tmp_path),
            "--name",
            "tiny",
            "--epochs",
            "1",
            "--base-width",
            "2",
            "--depth",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["architecture"]["base_width"] == 2
    assert card["training"]["epochs"] == 1 and card["training"]["loss"] == "bce"
    assert 0.0 <= card["test_metrics"]["dice"] <= 1.0
    assert (tmp_path / "tiny.safetensors").is_file()
    # the card it wrote is a loadable model for the audit
    res = runner.invoke(
        app,
        [
            "audit",
            "--out",
            str(tmp_path / "a"),
            "--weights",
            str(tmp_path / "tiny.json"),
            "--limit",
            "1",
            "--attacks",
            "fgsm",
            "--epsilons",
            "1/255",
            "--engines",
            "pytorch",
        ],
    )
    assert res.exit_code == 0, res.output


def test_import_segshield_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, segshield, segshield.engines; "
        "assert 'onnxruntime' not in sys.modules and 'tensorrt' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gate_and_report_commands_do_not_load_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, segshield.api, segshield.gate, segshield.reports; "
        "assert 'torch' not in sys.modules, 'torch loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("html", "report.html"),
        ("junit", "junit.xml"),
        ("csv", "results.csv"),
        ("summary", "summary.md"),
    ],
)
def test_audit_writes_every_format_and_report_rerenders_it(cli_audit, fmt: str, name: str) -> None:
    written = cli_audit.out_dir / name
    assert written.is_file() and written.stat().st_size > 0
    res = runner.invoke(app, ["report", str(cli_audit.out_dir / "report.json"), "--format", fmt])
    assert res.exit_code == 0, res.output
    assert res.output == written.read_text()


def test_report_unknown_format_exits_2(cli_audit) -> None:
    res = runner.invoke(app, ["report", str(cli_audit.out_dir / "report.json"), "--format", "pdf"])
    assert res.exit_code == 2 and "unknown report format 'pdf'" in res.output


def test_audit_classifier_writes_reports(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "audit-classifier",
            "--out",
            str(tmp_path),
            "--limit",
            "8",
            "--attacks",
            "fgsm",
            "--epsilons",
            "0,0.3",
        ],
    )
    assert res.exit_code == 0, res.output
    # The classifier audit is the one audit (task "classification"): the same report files.
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kind"] == "segshield.audit" and report["task"] == "classification"
    eps0 = next(c for c in report["cells"] if c["epsilon"] == 0)
    accuracy = eps0["engines"]["pytorch"]["metrics"]["accuracy"]
    assert accuracy == report["clean"]["pytorch"]["metrics"]["accuracy"]
    assert "Accuracy (%)" in res.output
    assert (tmp_path / "report.html").read_text().count("<svg") >= 2
    bad = runner.invoke(app, ["audit-classifier", "--out", str(tmp_path), "--attacks", "nope"])
    assert bad.exit_code == 2 and "unknown attack" in bad.output


def test_cli_import_stays_light_and_help_shows_library_defaults() -> None:
    import subprocess
    import sys

    code = (
        "import sys, segshield.cli.main; "
        "assert 'torch' not in sys.modules, 'torch loaded by the CLI import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from segshield.audits.config import DEFAULT_ATTACKS
    from segshield.engines import DEFAULT_ENGINES

    for command in ("audit", "export", "bench"):
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
        assert res.exit_code == 0, res.output
        assert ",".join(DEFAULT_ENGINES) in res.output, command
        assert "{DEFAULT" not in res.output and "{CPU_ENGINES}" not in res.output
    res = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "300"})
    assert ",".join(DEFAULT_ATTACKS) in res.output and "segshield-out" in res.output
    assert "'default' (1/255, 2/255, 4/255, 8/255)" in res.output


def test_audit_passes_only_typed_options_to_the_resolver(monkeypatch, tmp_path: Path) -> None:
    import segshield.audits.settings as settings

    seen: dict = {}

    def fake(overrides, config_path=None, search_dir=None, *, labels=None, check_policy=None):
        seen.update(overrides=overrides, labels=labels, config=config_path)
        raise settings.SettingsError("stop here")

    monkeypatch.setattr(settings, "resolve_audit_config", fake)
    res = runner.invoke(
        app,
        ["audit", "--out", str(tmp_path), "--epsilons", "advunet", "--model-kwargs", '{"a": 1}'],
    )
    assert res.exit_code == 2 and "stop here" in res.output
    assert seen["overrides"] == {
        "out_dir": tmp_path,
        "epsilons": "advunet",
        "model_kwargs": {"a": 1},
    }
    assert seen["labels"]["out_dir"] == "--out" and seen["labels"]["epsilons"] == "--epsilons"
