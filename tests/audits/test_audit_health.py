"""Engine health on the audited images: from the clean run, for built and loaded engines."""

from __future__ import annotations

import copy
import json
import sys
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


PUSHED = '''
import torch
from torch import nn

from segshield.models import bundled_model


class Pushed(nn.Module):
    """The bundled U-Net's masks with its background pushed to about -1440 (logits
    [-1440, 8], the lopsided range of an over-confident real model): z -> 0.36 relu(z) -
    66 relu(-z), as two 1x1 convs that static INT8 quantizes like the rest."""

    def __init__(self):
        super().__init__()
        self.model = bundled_model().module
        self.split, self.merge = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.split.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.split.bias.zero_()
            self.merge.weight.copy_(torch.tensor([0.36, -66.0]).view(1, 2, 1, 1))
            self.merge.bias.zero_()

    def forward(self, x):
        return self.merge(torch.relu(self.split(self.model(x))))


def make():
    return Pushed().eval()
'''


@pytest.fixture
def pushed_factory(tmp_path: Path, monkeypatch) -> str:
    (tmp_path / "pushed_unet_mod.py").write_text(PUSHED)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pushed_unet_mod:make"
    sys.modules.pop("pushed_unet_mod", None)


@pytest.mark.slow
def test_collapsed_int8_engine_is_failed_gated_and_strict(tmp_path: Path, pushed_factory) -> None:
    """The issue's case end to end: a lopsided-logit model whose default static INT8 engine
    loses its masks is never "ok"; the default policy and --strict fail on it; the INT8
    recipe search (chosen on the calibration images) brings it back to healthy."""
    from segshield.gate import evaluate, policy_from_dict
    from segshield.gate.strict import strict_problems

    cfg = {**FAST, "limit": 4, "engines": ("pytorch", "ort-int8"), "panels": 0, "n_boot": 0}
    spec = ModelSpec(pushed_factory)
    off = run_audit(AuditConfig(tmp_path / "off", model=spec, int8_search="off", **cfg))
    int8 = next(e for e in off.engines if e.name == "ort-int8")
    assert int8.status == "ok"  # it builds and runs: only its masks are wrong
    assert int8.health["status"] == "failed" and int8.health["mask_dice"] < 0.8
    assert int8.health["n_images"] == 4
    policy = policy_from_dict({"rules": [{"metric": "dice", "attack": "clean", "min": 0.0}]})
    verdict = evaluate(off, policy)
    assert not verdict.passed and "ort-int8" in verdict.failed_rules()[0].reason
    assert any("ort-int8" in p and "failed" in p for p in strict_problems(off))

    auto = run_audit(AuditConfig(tmp_path / "auto", model=spec, **cfg))
    searched = next(e for e in auto.engines if e.name == "ort-int8")
    assert searched.details["int8_search"]["searched"] is True
    assert searched.health["status"] == "ok", searched.health
    assert evaluate(auto, policy).passed and not strict_problems(auto)
