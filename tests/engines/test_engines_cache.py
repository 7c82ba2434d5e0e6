"""The engine cache (engines/cache.py): keys, atomic entries, checks on reuse. Real builds
of the tiny U-Net through ONNX Runtime; nothing mocked."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import segshield
from segshield.engines import BuildOptions, build_engines, load_engine
from segshield.engines.cache import (
    ENTRY_NAME,
    FILES,
    EngineCache,
    default_cache_dir,
    engine_key,
)
from segshield.models import module_fingerprint

CHW = (3, 32, 32)


@pytest.fixture(scope="module")
def tiny_built(tmp_path_factory: pytest.TempPathFactory, unet_factory):
    """ort-fp32 and ort-int8 of the tiny U-Net, built once: (build folder, {name: engine})."""
    rng = np.random.default_rng(0)
    calib = rng.random((8, *CHW), dtype=np.float32)
    sample = rng.random((4, *CHW), dtype=np.float32)
    out = tmp_path_factory.mktemp("built")
    built = build_engines(["ort-fp32", "ort-int8"], unet_factory(), calib, out, sample=sample)
    assert all(b.ok for b in built), [b.record.reason for b in built]
    return out, {b.name: b for b in built}


def _key(name: str = "ort-fp32", **overrides):
    args = {
        "model_fingerprint": "f" * 64,
        "options": BuildOptions(),
        "input_chw": CHW,
        "calibration_sha256": "c" * 64,
    } | overrides
    return engine_key(name, **args)


def test_key_changes_with_each_input(unet_factory, monkeypatch) -> None:
    base = _key("ort-int8")
    changed = {
        "engine": _key("ort-fp16"),
        "model": _key("ort-int8", model_fingerprint=module_fingerprint(unet_factory())),
        "weights": _key("ort-int8", model_fingerprint=module_fingerprint(unet_factory(seed=1))),
        "calibration_method": _key("ort-int8", options=BuildOptions(calibration_method="entropy")),
        "opset": _key("ort-int8", options=BuildOptions(opset=17)),
        "input shape": _key("ort-int8", input_chw=(3, 64, 64)),
        "calibration data": _key("ort-int8", calibration_sha256="d" * 64),
    }
    monkeypatch.setattr(segshield, "__version__", "0.0.0+other")
    changed["segshield version"] = _key("ort-int8")
    monkeypatch.undo()
    digests = {what: key.digest for what, key in changed.items()}
    assert base.digest not in digests.values()
    assert len(set(digests.values())) == len(digests), digests
    assert _key("ort-int8").digest == base.digest  # deterministic
    assert set(base.inputs["versions"]) >= {"torch", "onnx", "onnxruntime", "segshield", "python"}


def test_key_ignores_what_the_engine_does_not_depend_on() -> None:
    """An FP32 engine is reused whatever the INT8 calibration; a provenance label is no input."""
    fp32 = _key("ort-fp32")
    assert _key("ort-fp32", calibration_sha256=None).digest == fp32.digest
    other = BuildOptions(calibration_method="percentile", calibration_source="mine")
    assert _key("ort-fp32", options=other).digest == fp32.digest
    labelled = BuildOptions(calibration_source="bundled:nuclei/train")
    assert _key("ort-int8", options=labelled).digest == _key("ort-int8").digest


def test_default_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSHIELD_CACHE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "s" / "engines"
    monkeypatch.delenv("SEGSHIELD_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "x" / "segshield" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "segshield" / "engines"


def test_store_place_and_load_round_trip(tiny_built, tmp_path: Path) -> None:
    out, built = tiny_built
    cache, key = EngineCache(tmp_path / "cache"), _key("ort-fp32")
    assert cache.lookup(key) is None
    assert cache.store(key, built["ort-fp32"], out)
    entry = cache.entry_dir(key)
    data = json.loads((entry / ENTRY_NAME).read_text())
    assert data["key"] == key.digest and data["inputs"] == key.inputs
    assert data["onnx_export"]["sha256"] == built["ort-fp32"].info.onnx_export["sha256"]
    assert {a["path"] for a in data["record"]["artifacts"]} == {
        "model.onnx",
        "ort-fp32/model.ort-optimized.onnx",
    }
    assert not cache.store(key, built["ort-fp32"], out)  # already there: kept as it is
    cached = cache.lookup(key)
    assert cached is not None
    record = cache.place(cached, tmp_path / "audit")
    assert record is not None
    assert [Path(a.path).relative_to(tmp_path / "audit").as_posix() for a in record.artifacts] == [
        "ort-fp32/model.onnx",
        "ort-fp32/model.ort-optimized.onnx",
    ]
    assert [a.sha256 for a in record.artifacts] == [
        a.sha256 for a in built["ort-fp32"].record.artifacts
    ]
    sample = np.random.default_rng(5).random((2, *CHW), dtype=np.float32)
    got = load_engine(record, None).infer(sample)
    np.testing.assert_array_equal(got, built["ort-fp32"].runner.infer(sample))


def test_concurrent_stores_leave_one_complete_entry(tiny_built, tmp_path: Path) -> None:
    """Writers racing on one key (torchrun ranks): one wins, the others keep its entry, and
    no temporary folder is left behind."""
    out, built = tiny_built
    cache, key = EngineCache(tmp_path / "cache"), _key("ort-int8")
    barrier, results = threading.Barrier(4), []

    def store() -> None:
        barrier.wait()
        results.append(cache.store(key, built["ort-int8"], out))

    threads = [threading.Thread(target=store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert [p.name for p in cache.root.iterdir()] == ["ort-int8"]  # no .tmp-* folders
    cached = cache.lookup(key)
    assert cached is not None and cache.place(cached, tmp_path / "audit") is not None


def test_corrupted_entry_is_discarded_and_rebuilt(tiny_built, tmp_path: Path, caplog) -> None:
    out, built = tiny_built
    cache, key = EngineCache(tmp_path / "cache"), _key("ort-int8")
    assert cache.store(key, built["ort-int8"], out)
    file = cache.entry_dir(key) / FILES / "ort-int8" / "model.int8.qdq.onnx"
    file.write_bytes(file.read_bytes()[:-16] + b"\0" * 16)
    cached = cache.lookup(key)
    assert cached is not None  # its entry.json is fine: the copy's hash tells
    with caplog.at_level(logging.WARNING, logger="segshield.engines.cache"):
        assert cache.place(cached, tmp_path / "audit") is None
    assert "changed since it was stored" in caplog.text
    assert not cache.entry_dir(key).exists()
    assert not (tmp_path / "audit" / "ort-int8" / "model.int8.qdq.onnx").exists()
    assert cache.store(key, built["ort-int8"], out)  # the rebuilt engine takes its place
    cached = cache.lookup(key)
    assert cached is not None and cache.place(cached, tmp_path / "again") is not None
    # an unreadable entry.json is discarded too
    (cache.entry_dir(key) / ENTRY_NAME).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="segshield.engines.cache"):
        assert cache.lookup(key) is None
    assert not cache.entry_dir(key).exists()


def test_failed_and_unavailable_engines_are_not_cached(
    tiny_built, unet_factory, tmp_path: Path
) -> None:
    _, built = tiny_built
    sample = np.random.default_rng(0).random((2, *CHW), dtype=np.float32)
    failed, unavailable = build_engines(
        ["ort-int8", "ort-cuda"], unet_factory(), None, tmp_path / "b", sample=sample
    )
    assert failed.record.status == "error" and unavailable.record.status == "unavailable"
    cache = EngineCache(tmp_path / "cache")
    assert not cache.store(_key("ort-int8"), failed, tmp_path / "b")
    assert not cache.store(_key("ort-cuda"), unavailable, tmp_path / "b")
    assert not cache.root.exists()
    # an engine whose files lie outside the build folder is not cached either
    elsewhere = replace(built["ort-fp32"], record=replace(built["ort-fp32"].record))
    assert not cache.store(_key(), elsewhere, tmp_path / "b")
