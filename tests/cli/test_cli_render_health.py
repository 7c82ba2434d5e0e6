"""The terminal's engine lines carry each engine's health (first thing a CI log shows)."""

from __future__ import annotations

from rich.console import Console

from segshield.cli.render import print_engines
from segshield.engines.health import HealthThresholds, assess_health
from segshield.engines.records import EngineRecord
from segshield.results import AuditReport


def test_engine_lines_show_health_and_why_not_ok() -> None:
    ok = EngineRecord("ort-fp32", "onnxruntime", providers=["CPUExecutionProvider"])
    ok.health = assess_health(0.999, 0.0001, 4, HealthThresholds()).to_dict()
    bad = EngineRecord("ort-int8", "onnxruntime", providers=["CPUExecutionProvider"])
    bad.health = assess_health(0.0, 0.03, 4, HealthThresholds()).to_dict()
    old = EngineRecord("aoti-fp32", "aoti", providers=["cpu"])  # a report without health
    report = AuditReport({}, {}, {}, {}, engines=[ok, bad, old])
    console = Console(record=True, width=300)
    print_engines(console, report)
    text = console.export_text()
    assert "ort-fp32: runs on CPUExecutionProvider, health ok (mask agreement 0.9990 on 4" in text
    assert "health failed (mask agreement 0.0000 on 4 images): clean mask agreement" in text
    assert "aoti-fp32: runs on cpu\n" in text
