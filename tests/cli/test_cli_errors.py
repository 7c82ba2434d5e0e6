"""The one error boundary through typer's CliRunner: every input, environment or internal
error is one message and exit 2 (never 1, which CI reads as "the gate failed"); tracebacks
only with --debug; brackets in messages and help are shown as written; --strict; the
classifier audit's refusal of --data without a model; `segshield trust_pickle` only from the
command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.cli.main import app

runner = CliRunner()
# The cheapest real audit: one image, one attack, one ε, the source engine only.
QUICK = [
    "--limit",
    "1",
    "--attacks",
    "fgsm",
    "--epsilons",
    "8/255",
    "--engines",
    "pytorch",
    "--no-bench",
]


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of model factories that fail the way users' factories do."""
    (tmp_path / "user_factories.py").write_text(
        "def cuda_only(**kw):\n    raise RuntimeError('CUDA error: no kernel image\\nmore')\n"
        "def bad_width(**kw):\n    raise ValueError('width must be even')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_factories"


def _no_traceback(res) -> None:
    assert "Traceback" not in res.output, res.output


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        ("cuda_only", "model factory 'user_factories:cuda_only' failed when called as "),
        ("bad_width", "ValueError: width must be even"),
    ],
)
def test_a_failing_model_factory_is_exit_2(
    factories: str, tmp_path: Path, factory: str, needle: str
) -> None:
    out = tmp_path / "o"
    res = runner.invoke(app, ["audit", "--out", str(out), "--model", f"{factories}:{factory}"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "error:" in res.output
    _no_traceback(res)


def test_debug_adds_the_traceback_and_keeps_exit_2(factories: str, tmp_path: Path) -> None:
    args = ["audit", "--out", str(tmp_path / "o"), "--model", f"{factories}:cuda_only"]
    res = runner.invoke(app, ["--debug", *args])
    assert res.exit_code == 2
    assert "Traceback" in res.output and "RuntimeError: CUDA error" in res.output
    res = runner.invoke(app, args, env={"SEGSHIELD_DEBUG": "1"})
    assert res.exit_code == 2 and "Traceback" in res.output


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path: Path, monkeypatch) -> None:
    import segshield.api

    def must_not_run(*args, **kwargs):
        raise AssertionError("the audit ran")

    monkeypatch.setattr(segshield.api, "audit", must_not_run)
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for command in (["audit"], ["audit-classifier"]):
        res = runner.invoke(app, [*command, "--out", str(a_file)])
        assert res.exit_code == 2, res.output
        assert f"--out: {a_file} exists and is not a folder" in res.output
        _no_traceback(res)
    res = runner.invoke(app, ["export", "--out", str(a_file / "sub"), "--engines", "pytorch"])
    assert res.exit_code == 2 and "is a file" in res.output
    res = runner.invoke(app, ["train", "--out", str(a_file), "--epochs", "1"])
    assert res.exit_code == 2 and "exists and is not a folder" in res.output


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_in_an_unwritable_folder_is_refused() -> None:
    res = runner.invoke(app, ["audit", "--out", "/proc/segshield-out", *QUICK])
    assert res.exit_code == 2 and "cannot write into /proc" in res.output
    _no_traceback(res)


def test_a_model_card_that_is_not_json_is_exit_2(tmp_path: Path) -> None:
    card = tmp_path / "model.json"
    card.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), "--weights", str(card)])
    assert res.exit_code == 2 and f"model card {card} is not JSON" in res.output
    _no_traceback(res)


def test_a_decompression_bomb_is_exit_2(tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "d" / "images" / "a.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "d" / "masks" / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    res = runner.invoke(
        app, ["audit", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "d"), *QUICK]
    )
    assert res.exit_code == 2 and "refusing to read image" in res.output
    assert "MAX_IMAGE_PIXELS" in res.output
    _no_traceback(res)


@pytest.mark.parametrize(
    ("error", "needle"),
    [
        (OSError(28, "No space left on device", "/x/report.json"), "error: No space left on "),
        (PermissionError(13, "Permission denied", "/x/o"), "Permission denied: /x/o"),
        (KeyError("cells"), "internal error: KeyError: 'cells' (run with --debug for the"),
        (MemoryError(), "out of memory"),
        (KeyboardInterrupt(), "interrupted; an audit's finished cells are kept"),
    ],
)
def test_environment_and_internal_errors_are_exit_2(
    tmp_path: Path, monkeypatch, error: BaseException, needle: str
) -> None:
    import segshield.api

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(segshield.api, "audit", fails)
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), *QUICK])
    assert res.exit_code == 2, res.output  # never 1: that is "the gate failed"
    assert needle in res.output
    _no_traceback(res)


def test_an_error_after_the_audit_is_still_exit_2(tmp_path: Path, monkeypatch) -> None:
    """The boundary is around the whole command, not only the part inside `with`."""
    import segshield.cli.render as render

    def broken(*args, **kwargs):
        raise ValueError("a renderer bug")

    monkeypatch.setattr(render, "print_engines", broken)
    monkeypatch.setattr("segshield.api.audit", lambda *a, **k: _fake_outcome([], []))
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), *QUICK])
    assert res.exit_code == 2 and "internal error: ValueError: a renderer bug" in res.output


def test_usage_errors_keep_clicks_exit_2_and_usage_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["audit", "--limit", "0"])
    assert res.exit_code == 2 and "Usage:" in res.output and "internal error" not in res.output


def test_report_out_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    from segshield.reports import write_json

    report = write_json(_fake_outcome([], []).report, tmp_path / "report.json")
    out = tmp_path / "new" / "deeper" / "r.md"
    res = runner.invoke(app, ["report", str(report), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("# segshield audit")
    res = runner.invoke(app, ["report", str(report), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output
    blocked = tmp_path / "file"
    blocked.write_text("x")
    res = runner.invoke(app, ["report", str(report), "--out", str(blocked / "r.md")])
    assert res.exit_code == 2 and "error:" in res.output
    _no_traceback(res)


def test_brackets_show_literally_in_help_and_messages(tmp_path: Path) -> None:
    res = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0
    assert "pyproject.toml with [tool.segshield]" in res.output
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n')
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), "--config", str(pyproject)])
    assert res.exit_code == 2 and "has no [tool.segshield] table" in res.output
    policy = tmp_path / "policy.toml"
    policy.write_text("rules = 3\n")
    report = tmp_path / "report.json"
    res = runner.invoke(app, ["gate", str(report), "--policy", str(policy)])
    assert res.exit_code == 2 and "([[rules]])" in res.output, res.output


def test_every_settings_problem_and_policy_typo_in_one_error(tmp_path: Path) -> None:
    (tmp_path / "segshield.toml").write_text(
        '[audit]\nstepz = 3\nsize = "big"\n[policy]\nnmae = "x"\n'
        '[[rules]]\nmetric = "dcie"\nmin = 0.5\n'
    )
    res = runner.invoke(
        app,
        ["audit", "--config", str(tmp_path / "segshield.toml"), "--epsilons", "2/0"],
    )
    assert res.exit_code == 2, res.output
    for needle in (
        "audit.stepz: unknown setting",
        "audit.size: expected int",
        "--epsilons: '2/0' divides by zero",
        "policy rule 1: unknown metric 'dcie'",
        "[policy]: unknown key(s) 'nmae'",
    ):
        assert needle in res.output, needle
    assert res.output.count("error:") == 1
    _no_traceback(res)


def test_settings_file_cannot_trust_pickles_only_the_option_can(tmp_path: Path) -> None:
    import torch

    from segshield.models import unet

    whole = tmp_path / "whole.pt"
    torch.save(unet(base_width=2, depth=1), whole)
    (tmp_path / "segshield.toml").write_text(f'[audit]\nweights = "{whole}"\ntrust_pickle = true\n')
    res = runner.invoke(app, ["audit", "--config", str(tmp_path / "segshield.toml"), *QUICK])
    assert res.exit_code == 2
    assert "audit.trust_pickle: a settings file cannot allow unpickling" in res.output
    assert "pass --trust-pickle on the command line" in res.output
    out = tmp_path / "o"
    res = runner.invoke(
        app,
        ["audit", "--out", str(out), "--weights", str(whole), "--trust-pickle", "--strict", *QUICK],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["model"]["allow_pickle"] is True
    assert report["model"]["source"] == "pickle"


def test_classifier_audit_refuses_data_without_a_model(tmp_path: Path) -> None:
    res = runner.invoke(app, ["audit-classifier", "--out", str(tmp_path), "--data", "mine/"])
    assert res.exit_code == 2
    assert "pass --model/--weights for your classifier, or omit --data" in res.output
    assert not (tmp_path / "report.json").exists()
    # with a model of one's own, --data is audited (random weights: a smoke run)
    from segshield.data.loaders import bundled_dataset_path

    data = str(bundled_dataset_path("nuclei", "test"))
    args = ["--model", "segshield.models.classifier:SmallCNN", "--limit", "2", "--attacks", "fgsm"]
    res = runner.invoke(
        app,
        ["audit-classifier", "--out", str(tmp_path), "--data", data, *args, "--epsilons", "0.1"],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"]["factory"] == "segshield.models.classifier:SmallCNN"


def _fake_outcome(engines: list, cells: list, gate=None):
    from segshield.api import AuditOutcome
    from segshield.results import AuditReport

    report = AuditReport(
        provenance={"seconds": 1.0},
        config={},
        model={"name": "m"},
        dataset={"source": "s"},
        engines=engines,
        cells=cells,
    )
    return AuditOutcome(report, gate, {})


def _broken_audit():
    from segshield.engines.records import EngineRecord
    from segshield.results import AuditCell

    engines = [
        EngineRecord("ort-cuda", "onnxruntime", status="unavailable", reason="no CUDA"),
        EngineRecord("ort-int8", "onnxruntime", health={"status": "failed", "reason": "[0] off"}),
    ]
    cells = [
        AuditCell(
            id="pgd/bce/0.0313725",
            attack="pgd",
            loss="bce",
            epsilon=8 / 255,
            status="error",
            error="RuntimeError: [[boom]]",
        )
    ]
    return _fake_outcome(engines, cells)


@pytest.mark.parametrize("command", ["audit", "audit-classifier"])
def test_strict_exits_1_on_failed_cells_and_engines(tmp_path: Path, monkeypatch, command) -> None:
    monkeypatch.setattr("segshield.api.audit", lambda *a, **k: _broken_audit())
    args = [command, "--out", str(tmp_path / "o")]
    res = runner.invoke(app, [*args, "--strict"])
    assert res.exit_code == 1, res.output
    assert "strict: cell pgd/bce/8/255 failed: RuntimeError: [[boom]]" in res.output
    assert "strict: engine ort-int8 health is failed: [0] off" in res.output
    assert "ort-cuda" not in res.output.split("strict:", 1)[1]  # unavailable: not a failure
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "warning: cell pgd/bce/8/255 failed" in res.output
    assert "--strict makes them exit 1" in res.output


def test_brackets_in_names_and_paths_show_literally(tmp_path: Path, monkeypatch) -> None:
    from segshield.engines.records import EngineRecord

    gpu = EngineRecord("ort-cuda", "onnxruntime", status="unavailable", reason="needs [cuda] extra")
    outcome = _fake_outcome([gpu], [])
    outcome.report.dataset = {"source": "data/[2024] busi"}
    outcome.report.model = {"name": "[unet]"}
    monkeypatch.setattr("segshield.api.audit", lambda *a, **k: outcome)
    res = runner.invoke(app, ["audit", "--out", str(tmp_path / "o"), *QUICK])
    assert res.exit_code == 0, res.output
    for shown in ("[unet]", "data/[2024]", "needs [cuda] extra"):
        assert shown in res.output, shown


def test_strict_on_a_real_audit_whose_cells_fail(tmp_path: Path, monkeypatch) -> None:
    """A model that cannot be differentiated: the clean run works, every attack cell fails."""
    (tmp_path / "gradless.py").write_text(
        "import torch\n"
        "class NoGrad(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        if torch.is_grad_enabled() and x.requires_grad:\n"
        "            raise RuntimeError('this model cannot be differentiated')\n"
        "        return self.conv(x)\n"
        "def make():\n"
        "    return NoGrad()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "o"
    args = ["audit", "--out", str(out), "--model", "gradless:make", *QUICK]
    res = runner.invoke(app, [*args, "--strict"])
    assert res.exit_code == 1, res.output
    line = "cell fgsm/bce/8/255 failed: RuntimeError: this model cannot be differentiated"
    assert f"strict: {line}" in res.output
    assert json.loads((out / "report.json").read_text())["cells"][0]["status"] == "error"
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and f"warning: {line}" in res.output
