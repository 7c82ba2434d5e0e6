"""Audits reuse engines through the engine cache: a miss then a hit with identical metrics,
parity always measured again on the audit's images, opting out, keys that miss. The bundled
model, real nuclei tiles, real ONNX Runtime builds."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from segshield.audits import AuditConfig, run_audit
from segshield.engines import runners_from_manifest
from segshield.engines.cache import ENTRY_NAME, FILES
from segshield.exporters import onnx_from_torch
from segshield.hashing import sha256_file
from segshield.models import ModelSpec, load_model

FAST = {
    "limit": 2,
    "attacks": ("fgsm",),
    "epsilons": (8 / 255,),
    "steps": 1,
    "bench": False,
    "panels": 0,
    "n_boot": 0,
}
ONNX = ("pytorch", "ort-fp32", "ort-int8")


def _audit(out: Path, cache: Path | None, **kw):
    settings = FAST | {"engines": ONNX} | kw
    return run_audit(AuditConfig(out, engine_cache_dir=cache, **settings))


def _metrics(report) -> dict:
    clean = {n: e.metrics for n, e in report.clean.items()}
    cells = {c.id: {n: e.metrics for n, e in c.engines.items()} for c in report.cells}
    return {"clean": clean, "cells": cells}


def test_second_audit_hits_with_identical_metrics(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = _audit(tmp_path / "a", cache)
    assert cold.build["engine_cache"] == {
        "enabled": True,
        "dir": str(cache.resolve()),
        "hits": [],
        "misses": ["ort-fp32", "ort-int8"],
        "stored": ["ort-fp32", "ort-int8"],
    }
    warm = _audit(tmp_path / "b", cache)
    assert warm.build["engine_cache"]["hits"] == ["ort-fp32", "ort-int8"]
    assert warm.build["engine_cache"]["misses"] == []
    assert _metrics(warm) == _metrics(cold)
    assert warm.provenance["onnx_sha256"] == cold.provenance["onnx_sha256"]
    before = {e.name: e for e in cold.engines}
    for record in warm.engines[1:]:
        assert record.status == "ok" and record.health["status"] == "ok"
        assert record.sha256 == before[record.name].sha256
        assert "engine cache" in record.notes[-1]
        # parity measured again (same images here, so the same values), the stored one beside
        fresh = {k: v for k, v in record.parity.items() if k != "manifest"}
        assert fresh == before[record.name].parity
        assert record.parity["manifest"] == before[record.name].parity
    # the out folder is self-contained: its manifest loads without the cache
    loaded = runners_from_manifest(tmp_path / "b" / "engines", load_model(ModelSpec()).module)
    assert [b.name for b in loaded] == list(ONNX) and all(b.ok for b in loaded)


def test_changed_options_and_engine_lists_miss_only_what_changed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _audit(tmp_path / "a", cache)
    other = _audit(tmp_path / "b", cache, calibration_method="percentile")
    assert other.build["engine_cache"]["hits"] == ["ort-fp32"]  # FP32 needs no calibration
    assert other.build["engine_cache"]["misses"] == ["ort-int8"]
    assert other.build["calibration"]["method"] == "percentile"
    more = _audit(tmp_path / "c", cache, engines=("pytorch", "ort-fp32", "ort-fp16"))
    assert more.build["engine_cache"]["hits"] == ["ort-fp32"]
    assert more.build["engine_cache"]["misses"] == ["ort-fp16"]
    assert all(e.status == "ok" and e.health["status"] == "ok" for e in more.engines)
    assert sorted(p.name for p in cache.iterdir()) == ["ort-fp16", "ort-fp32", "ort-int8"]
    assert len(list((cache / "ort-int8").iterdir())) == 2  # minmax and percentile


def _wrong_onnx_behind_matching_hashes(cache: Path) -> None:
    """Replace the cached ort-fp32 file by an export of another model (masks inverted) and
    fix the entry's hashes, as a consistent but wrong entry would have them."""
    (entry,) = (cache / "ort-fp32").iterdir()
    data = json.loads((entry / ENTRY_NAME).read_text())
    artifact = data["record"]["artifacts"][0]
    wrong = copy.deepcopy(load_model(ModelSpec()).module).eval()
    last = [m for m in wrong.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.neg_()
        last.bias.neg_()
    path = entry / FILES / artifact["path"]
    onnx_from_torch(wrong, torch.rand(2, 1, 128, 128), path)
    artifact["sha256"], artifact["bytes"] = sha256_file(path), path.stat().st_size
    data["record"]["sha256"] = artifact["sha256"]
    (entry / ENTRY_NAME).write_text(json.dumps(data))


def test_a_hit_is_rechecked_on_this_audits_images(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    engines = ("pytorch", "ort-fp32")
    _audit(tmp_path / "a", cache, engines=engines)
    _wrong_onnx_behind_matching_hashes(cache)
    report = _audit(tmp_path / "b", cache, engines=engines, limit=3)  # other images: a hit too
    assert report.build["engine_cache"]["hits"] == ["ort-fp32"]
    record = report.engines[1]
    assert record.status == "ok"  # it loads and runs: only the re-check can tell
    assert record.parity["n_images"] == 3 and record.parity["manifest"]["n_images"] == 2
    assert record.parity["manifest"]["mask_dice"] > 0.99 and record.parity["mask_dice"] < 0.5
    assert record.health["status"] == "failed" and record.health["n_images"] == 3


def test_a_corrupted_entry_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    engines = ("pytorch", "ort-fp32")
    cold = _audit(tmp_path / "a", cache, engines=engines)
    (entry,) = (cache / "ort-fp32").iterdir()
    onnx = entry / FILES / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-8] + b"\0" * 8)
    again = _audit(tmp_path / "b", cache, engines=engines)
    assert again.build["engine_cache"]["misses"] == ["ort-fp32"]
    assert again.build["engine_cache"]["stored"] == ["ort-fp32"]
    assert again.engines[1].sha256 == cold.engines[1].sha256  # rebuilt, the same bytes
    assert sha256_file(onnx) == cold.engines[1].sha256  # and cached again


def test_no_engine_cache_leaves_the_folder_untouched(tmp_path: Path, engine_cache_dir) -> None:
    cache = tmp_path / "cache"
    report = _audit(tmp_path / "a", cache, engines=("pytorch", "ort-fp32"), engine_cache=False)
    assert report.build["engine_cache"] == {"enabled": False}
    assert not cache.exists() and list(engine_cache_dir.iterdir()) == []
    # the default folder is $SEGSHIELD_CACHE_DIR/engines (a per-test folder in this suite)
    default = _audit(tmp_path / "b", None, engines=("pytorch", "ort-fp32"))
    assert os.environ["SEGSHIELD_CACHE_DIR"] == str(engine_cache_dir)
    assert default.build["engine_cache"]["dir"] == str((engine_cache_dir / "engines").resolve())
    assert (engine_cache_dir / "engines" / "ort-fp32").is_dir()
