"""Engine health on the audited images: from the clean run, for built and loaded engines."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segshield.api import export_engines
from segshield.audits import AuditConfig, run_audit
from segshield.audits.engines import AuditEngine
from segshield.audits.evaluate import Outputs
from segshield.audits.health import engine_health
from segshield.engines.health import HealthThresholds
from segshield.engines.records import EngineRecord
from segshield.exporters import onnx_from_torch, sha256_file
from segshield.models import ModelSpec, load_model
from segshield.results import EngineEval, Metrics
from segshield.tasks import SegmentationTask

FAST = {"limit": 3, "epsilons": (2 / 255,), "steps": 1, "attacks": ("fgsm",), "bench": False}
TASK = SegmentationTask("binary", 1)


def _engine(name: str, status: str = "ok", reason: str | None = None) -> AuditEngine:
    return AuditEngine(EngineRecord(name, "onnxruntime", status=status, reason=reason), None)


def _outputs(source: np.ndarray, **engines: np.ndarray) -> Outputs:
    return Outputs(preds={"pytorch": source, **engines})


def test_engine_health_branches() -> None:
    src = np.zeros((2, 1, 4, 4), dtype=bool)
    src[:, :, :2] = True
    half = src.copy()
    half[:, :, 1] = False  # half of the foreground lost: Dice 2/3
    clean = {n: EngineEval(n, metrics=Metrics()) for n in ("pytorch", "same", "half")}
    out = _outputs(src, same=src.copy(), half=half)
    th = HealthThresholds()
    ok = engine_health(_engine("same"), clean, out, TASK, th)
    assert ok.status == "ok" and ok.mask_dice == 1.0 and ok.n_images == 2 and ok.reason is None
    bad = engine_health(_engine("half"), clean, out, TASK, th)
    assert bad.status == "failed" and bad.mask_dice == pytest.approx(2 / 3)
    assert "below the failed bound 0.8" in bad.reason
    assert engine_health(_engine("half"), clean, out, TASK, HealthThresholds(0.9, 0.5)).status == (
        "degraded"
    )
    assert engine_health(_engine("gpu", "unavailable", "no CUDA"), clean, out, TASK, th) is None
    built = engine_health(_engine("x", "error", "export failed"), clean, out, TASK, th)
    assert built.status == "failed" and built.mask_dice is None and "export failed" in built.reason
    clean["broke"] = EngineEval("broke", status="error", error="ORT crashed")
    run = engine_health(_engine("broke"), clean, out, TASK, th)
    assert run.status == "failed" and "ORT crashed" in run.reason


def test_health_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="failed_below <= ok_min"):
        HealthThresholds(ok_min=0.5, failed_below=0.9)
    with pytest.raises(ValueError, match="health thresholds"):
        AuditConfig(Path("x"), health_ok_min=0.5, health_failed_below=0.9)


def _wrong_onnx_behind_matching_hashes(engines: Path) -> None:
    """Replace ort-fp32's file by an export of another model (the masks inverted) and fix the
    manifest's hashes, as a consistent but wrong deployment folder would have them."""
    manifest_path = engines / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    record = next(e for e in manifest["engines"] if e["name"] == "ort-fp32")
    artifact = record["artifacts"][0]
    wrong = copy.deepcopy(load_model(ModelSpec()).module).eval()
    last = [m for m in wrong.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.neg_()
        last.bias.neg_()
    sample = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    path = engines / artifact["path"]
    onnx_from_torch(wrong, sample, path)
    artifact["sha256"], artifact["bytes"] = sha256_file(path), path.stat().st_size
    record["sha256"] = artifact["sha256"]
    manifest_path.write_text(json.dumps(manifest))


def test_engines_dir_engine_is_rechecked_on_the_audited_images(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    export_engines(ModelSpec(), ("pytorch", "ort-fp32"), engines)
    _wrong_onnx_behind_matching_hashes(engines)
    report = run_audit(
        AuditConfig(tmp_path / "audit", engines=("pytorch", "ort-fp32"), engines_dir=engines,
                    **FAST)
    )  # fmt: skip
    record = next(e for e in report.engines if e.name == "ort-fp32")
    assert record.status == "ok"  # it loads and runs: only the re-check can tell
    assert record.parity["n_images"] == 3 and record.parity["manifest"]["mask_dice"] > 0.99
    assert record.parity["mask_dice"] < 0.5
    assert record.health["status"] == "failed" and record.health["n_images"] == 3
    source = next(e for e in report.engines if e.name == "pytorch")
    assert source.health["status"] == "ok" and source.health["mask_dice"] == 1.0
