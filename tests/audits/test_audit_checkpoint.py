"""Finished work survives: the output lock, cells written as they finish, resume after a
kill -9, and the previous run's reports moved aside (audits/checkpoint.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.audits import AuditCell
from segshield.audits.checkpoint import (
    CELLS_DIR,
    LOCK_NAME,
    PREVIOUS_DIR,
    CellStore,
    OutputBusyError,
    output_lock,
    retire,
)
from segshield.cli.main import app

AUDIT = [
    "--limit", "4", "--attacks", "fgsm,bim,pgd", "--epsilons", "2/255,8/255",
    "--engines", "pytorch,ort-fp32", "--no-bench", "--batch-size", "2",
]  # fmt: skip


def _holder() -> subprocess.Popen:
    """A live process whose pid is in a lock file (it only sleeps)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, pid: int) -> None:
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}
    (folder / LOCK_NAME).write_text(json.dumps(info))


def test_lock_refuses_a_live_holder_and_names_it(tmp_path: Path) -> None:
    proc = _holder()
    try:
        _write_lock(tmp_path, proc.pid)
        busy = pytest.raises(OutputBusyError, match=f"in use by another audit \\(pid {proc.pid}")
        with busy, output_lock(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).is_file()  # someone else's lock is left alone
    finally:
        proc.kill()
        proc.wait()


def test_lock_takes_over_from_a_killed_audit_and_releases(tmp_path: Path) -> None:
    _write_lock(tmp_path, _dead_pid())
    with output_lock(tmp_path):
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid()
        with output_lock(tmp_path):  # re-entrant in one process
            pass
        assert (tmp_path / LOCK_NAME).is_file()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_audit_into_a_busy_folder_exits_2(tmp_path: Path) -> None:
    proc = _holder()
    try:
        _write_lock(tmp_path, proc.pid)
        result = CliRunner().invoke(app, ["audit", "--out", str(tmp_path), *AUDIT])
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 2, result.output
    assert f"pid {proc.pid}" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "report.json").exists()


def test_cell_store_keeps_only_this_configurations_cells(tmp_path: Path) -> None:
    cell = AuditCell(AuditCell.make_id("fgsm", "bce", 0.1), "fgsm", "bce", 0.1, seconds=1.5)
    CellStore(tmp_path, "key-a").save(0, cell)
    assert not list((tmp_path / CELLS_DIR).glob("*.tmp*"))
    back = CellStore(tmp_path, "key-a").load(resume=True)
    assert list(back) == [cell.id] and back[cell.id].seconds == 1.5
    assert CellStore(tmp_path, "key-a").load(resume=False) == {}  # not resumed: moved aside
    assert list((tmp_path / PREVIOUS_DIR / CELLS_DIR).glob("*.json"))
    CellStore(tmp_path, "key-a").save(0, cell)
    assert CellStore(tmp_path, "key-b").load(resume=True) == {}  # another configuration
    assert not list((tmp_path / CELLS_DIR).glob("*.json"))


def test_retire_moves_reports_aside(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / PREVIOUS_DIR).mkdir()
    (tmp_path / PREVIOUS_DIR / "report.json").write_text("older")
    assert retire(tmp_path, ["report.json", "report.md"]) == ["report.json"]
    assert not (tmp_path / "report.json").exists()
    assert (tmp_path / PREVIOUS_DIR / "report.json").read_text() == "{}"


def _measured(report: dict) -> list:
    """What a cell measured (its timing left out)."""
    return [{k: v for k, v in c.items() if k not in ("seconds", "panels")} for c in report["cells"]]


@pytest.mark.slow
def test_kill_9_then_resume_recomputes_only_unfinished_cells(tmp_path: Path) -> None:
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "segshield", "audit", "--out", str(killed), *AUDIT]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((killed / CELLS_DIR).glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the audit ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {json.loads(p.read_text())["id"] for p in (killed / CELLS_DIR).glob("*.json")}
    assert 2 <= len(finished) < 6 and (killed / LOCK_NAME).exists()
    assert not (killed / "report.json").exists()

    runner = CliRunner()
    resumed = runner.invoke(app, ["audit", "--out", str(killed), *AUDIT])
    assert resumed.exit_code == 0, resumed.output
    fresh = runner.invoke(app, ["audit", "--out", str(whole), *AUDIT])
    assert fresh.exit_code == 0, fresh.output
    a = json.loads((killed / "report.json").read_text())
    b = json.loads((whole / "report.json").read_text())
    assert set(a["provenance"]["resumed_cells"]) == finished
    assert b["provenance"]["resumed_cells"] == []
    assert _measured(a) == _measured(b)
    assert a["clean"] == b["clean"]
    assert not (killed / LOCK_NAME).exists()


def test_rerun_moves_the_old_report_aside_and_a_changed_setting_recomputes(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    args = ["audit", "--out", str(tmp_path), *AUDIT[:2], "--attacks", "fgsm",
            "--epsilons", "2/255", "--engines", "pytorch", "--no-bench"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*args, "--seed", "1"])
    assert again.exit_code == 0, again.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["provenance"]["resumed_cells"] == []  # another seed: nothing reused
    assert (tmp_path / PREVIOUS_DIR / "report.json").is_file()
    same = runner.invoke(app, [*args, "--seed", "1"])
    assert same.exit_code == 0, same.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["provenance"]["resumed_cells"] == [report["cells"][0]["id"]]
    no = runner.invoke(app, [*args, "--seed", "1", "--no-resume"])
    assert no.exit_code == 0, no.output
    assert json.loads((tmp_path / "report.json").read_text())["provenance"]["resumed_cells"] == []


def test_an_edited_loss_is_not_the_same_function_in_the_resume_key() -> None:
    """A user's loss is named and hashed by its code: editing its body changes the key."""
    from segshield.audits.checkpoint import _function_id

    def loss(logits, target):
        return logits.mean((1, 2, 3))

    first = _function_id(loss)

    def loss(logits, target):
        return -logits.mean((1, 2, 3))

    assert _function_id(loss) != first
    assert first.split("@")[0].endswith("loss")
    assert _function_id(loss) == _function_id(loss)
