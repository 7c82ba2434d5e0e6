"""Engine commands: list, export to a manifest, audit from it, bench."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from segshield.cli.main import app

runner = CliRunner()


def test_engines_lists_gpu_engines_as_unavailable_here() -> None:
    res = runner.invoke(app, ["engines"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "ort-int8" in res.output and "tensorrt-fp16" in res.output
    assert "available" in res.output


def test_export_then_audit_from_the_manifest(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    res = runner.invoke(
        app, ["export", "--out", str(engines), "--engines", "pytorch,ort-fp32,ort-fp16"]
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((engines / "manifest.json").read_text())
    assert [e["name"] for e in manifest["engines"]] == ["pytorch", "ort-fp32", "ort-fp16"]
    out = tmp_path / "audit"
    res = runner.invoke(
        app,
        [
            "audit",
            "--out",
            str(out),
            "--engines-dir",
            str(engines),
            "--engines",
            "pytorch,ort-fp16",
            "--limit",
            "1",
            "--attacks",
            "fgsm",
            "--epsilons",
            "4/255",
            "--no-bench",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert [e["name"] for e in report["engines"]] == ["pytorch", "ort-fp16"]
    assert report["build"]["engines_dir"] == str(engines)
    assert not (out / "engines").exists()  # nothing rebuilt
    # a manifest built from another model is refused
    res = runner.invoke(
        app,
        [
            "audit",
            "--out",
            str(tmp_path / "x"),
            "--engines-dir",
            str(engines),
            "--model",
            "segshield.models.unet:unet",
            "--limit",
            "1",
            "--engines",
            "pytorch,ort-fp32",
        ],
    )
    assert res.exit_code == 2 and "not the one the engines" in res.output


def test_bench_writes_latency_and_attack_throughput(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "bench",
            "--out",
            str(tmp_path),
            "--engines",
            "pytorch,ort-fp32",
            "--batch-sizes",
            "1",
            "--attacks",
            "fgsm",
            "--warmup-s",
            "0.05",
            "--min-iters",
            "3",
            "--min-duration-s",
            "0.1",
        ],
    )
    assert res.exit_code == 0, res.output
    bench = json.loads((tmp_path / "bench.json").read_text())
    rows = bench["latency"]
    assert {r["engine"] for r in rows} == {"pytorch", "ort-fp32"}
    for r in rows:
        assert r["iterations"] >= 3
        assert r["min_ms"] <= r["median_ms"] <= r["p99_ms"] <= r["max_ms"]
    (fgsm,) = bench["attack_throughput"]
    assert fgsm["steps"] == 1 and fgsm["images_per_s"] > 0
    assert "Attack throughput" in (tmp_path / "bench.md").read_text()
