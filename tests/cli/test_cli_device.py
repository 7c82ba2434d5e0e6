"""`--device` on bench, train and audit (a machine without CUDA refuses `cuda` in one line,
exit 2), a real small CPU training run, and the plain progress lines a non-terminal console
(CI logs, CliRunner) gets: one per finished audit cell and one per training epoch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segshield.cli.main import app
from segshield.cli.progress import StepClock, format_duration, readable_epsilons

runner = CliRunner()
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

_TINY_TRAIN = ["--epochs", "1", "--base-width", "2", "--depth", "1"]
_COMMANDS = {
    "bench": ["bench", "--engines", "pytorch", "--attacks", "fgsm"],
    "train": ["train", *_TINY_TRAIN],
    "audit": ["audit", "--engines", "pytorch", "--no-bench", "--limit", "1"],
}
_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+) done · (.+) elapsed · ETA (.+)$")


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@no_cuda
@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_cuda_without_cuda_is_one_line_exit_2(command: str, tmp_path: Path) -> None:
    args = [*_COMMANDS[command], "--out", str(tmp_path / "out"), "--device", "cuda"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = _error_lines(res.output)
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "CUDA" in lines[0] and "--device cuda" in lines[0]
    if command != "audit":  # the audit's settings step may make its folder first
        assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_bogus_device_exit_2(command: str, tmp_path: Path) -> None:
    args = [*_COMMANDS[command], "--out", str(tmp_path / "out"), "--device", "bogus"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "bogus" in res.output and "cpu, cuda, cuda:N or auto" in res.output


def test_train_on_cpu_writes_cpu_weights_and_epoch_lines(tmp_path: Path) -> None:
    from safetensors import safe_open

    args = ["train", "--out", str(tmp_path), "--name", "tiny", "--device", "cpu"]
    res = runner.invoke(app, [*args, *_TINY_TRAIN[2:], "--epochs", "2"])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["training"]["device"] == "cpu"
    with safe_open(str(tmp_path / "tiny.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).device.type == "cpu" for k in f.keys())  # noqa: SIM118
    lines = [m for line in res.output.splitlines() if (m := _LINE.match(line))]
    assert [(m[1], m[2]) for m in lines] == [("1", "2"), ("2", "2")]
    assert lines[0][3].startswith("epoch 1 (bce ") and lines[1][5] == "0 s"


def test_audit_prints_one_line_per_cell_in_order(tmp_path: Path) -> None:
    args = ["audit", "--out", str(tmp_path), "--engines", "pytorch", "--no-bench"]
    opts = ["--limit", "1", "--attacks", "fgsm,pgd", "--epsilons", "1/255,2/255", "--steps", "2"]
    res = runner.invoke(app, [*args, *opts])
    assert res.exit_code == 0, res.output
    lines = [m for line in res.output.splitlines() if (m := _LINE.match(line))]
    report = json.loads((tmp_path / "report.json").read_text())
    cells = [c["id"] for c in report["cells"]]
    assert len(cells) == 4
    assert [int(m[1]) for m in lines] == [1, 2, 3, 4]
    assert {int(m[2]) for m in lines} == {4}
    assert sorted(m[3] for m in lines) == sorted(map(readable_epsilons, cells))  # each once
    assert lines[-1][5] == "0 s"


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 41.6, 110, 180, 3600, 7500, -3)] == [
        "0 s", "42 s", "1 min 50 s", "3 min", "1 h", "2 h 5 min", "0 s",
    ]  # fmt: skip


def test_step_clock_eta_uses_the_pace_after_the_first_step() -> None:
    times = iter([0.0, 30.0, 35.0, 40.0])  # 30 s preparing + first step, then 5 s a step
    clock = StepClock(lambda: next(times))
    assert clock.line(1, 4, "a") == "[1/4] a done · 30 s elapsed · ETA 1 min 30 s"
    assert clock.line(2, 4, "b") == "[2/4] b done · 35 s elapsed · ETA 10 s"
    assert clock.line(4, 4, "d") == "[4/4] d done · 40 s elapsed · ETA 0 s"


def _bench(tmp_path: Path, device: str) -> dict:
    fast = ["--batch-sizes", "1", "--warmup-s", "0.05", "--min-iters", "2", "--min-duration-s", "0"]
    args = ["bench", "--out", str(tmp_path), "--engines", "pytorch", "--attacks", "fgsm", *fast]
    res = runner.invoke(app, [*args, "--device", device])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "bench.json").read_text())


def test_bench_auto_without_cuda_runs_on_cpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    bench = _bench(tmp_path, "auto")
    assert bench["device"] == "cpu"
    assert [r["providers"] for r in bench["latency"]] == [["cpu"]]
    assert bench["attack_throughput"][0]["device"] == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bench_on_cuda(tmp_path: Path) -> None:
    bench = _bench(tmp_path, "cuda")
    assert bench["device"] == "cuda:0"
    (row,) = bench["latency"]
    assert row["providers"] == ["cuda:0"] and row["cuda_sync"] is True
    assert bench["attack_throughput"][0]["device"] == "cuda:0"
    assert bench["engines"][0]["device"] == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_train_on_cuda_writes_cpu_weights(tmp_path: Path) -> None:
    from safetensors import safe_open

    args = ["train", "--out", str(tmp_path), "--name", "tiny", "--device", "cuda", *_TINY_TRAIN]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "tiny.json").read_text())["training"]["device"] == "cuda:0"
    with safe_open(str(tmp_path / "tiny.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).device.type == "cpu" for k in f.keys())  # noqa: SIM118
