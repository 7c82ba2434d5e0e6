"""Manifest roundtrip: build -> write_manifest -> runners_from_manifest -> same outputs, with
hashes checked, relative paths (the folder can move) and per-engine failures."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from segshield.engines import build_engines, read_manifest, runners_from_manifest, write_manifest
from segshield.engines.manifest import MANIFEST_NAME, MANIFEST_SCHEMA
from segshield.errors import ModelLoadError


@pytest.fixture(scope="module")
def manifest(cpu_engines):
    out, built = cpu_engines
    return write_manifest(built, out)


@pytest.mark.slow
def test_manifest_contents(manifest, cpu_engines, nuclei_test):
    _, built = cpu_engines
    data = json.loads(manifest.read_text())
    assert data["schema"] == MANIFEST_SCHEMA
    assert [e["name"] for e in data["engines"]] == [b.name for b in built]
    assert data["model_fingerprint"] == built[0].info.model_fingerprint
    assert data["sample"]["n_images"] == len(nuclei_test.images)
    assert data["calibration"]["n_images"] == 12
    assert data["onnx_export"]["path"] == "model.onnx"
    for entry in data["engines"]:
        assert entry["status"] == "ok"
        assert entry["parity"]["flip_share"] is not None
        assert entry["build_seconds"] is not None
        for artifact in entry["artifacts"]:
            assert not artifact["path"].startswith("/"), artifact  # relative: folder can move
    int8 = next(e for e in data["engines"] if e["name"] == "ort-int8")
    assert int8["artifact"] == "ort-int8/model.int8.qdq.onnx"
    assert len(int8["sha256"]) == 64


@pytest.mark.slow
def test_roundtrip_gives_the_same_outputs(manifest, cpu_engines, bundled_unet, nuclei_test):
    _, built = cpu_engines
    loaded = runners_from_manifest(manifest, bundled_unet)
    assert [b.name for b in loaded] == [b.name for b in built]
    for before, after in zip(built, loaded, strict=True):
        assert after.ok, (after.name, after.record.reason)
        assert after.record.parity == before.record.parity
        assert after.record.precision == before.record.precision
        np.testing.assert_allclose(
            after.runner.infer(nuclei_test.images),
            before.runner.infer(nuclei_test.images),
            rtol=0,
            atol=1e-6,
            err_msg=after.name,
        )


@pytest.mark.slow
def test_moved_folder_loads_and_tampering_is_caught(manifest, bundled_unet, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(manifest.parent, moved)
    with (moved / "ort-int8" / "model.int8.qdq.onnx").open("ab") as fh:
        fh.write(b"\0")
    loaded = {b.name: b for b in runners_from_manifest(moved, bundled_unet)}
    assert loaded["ort-int8"].record.status == "error"
    assert "changed since it was built" in loaded["ort-int8"].record.reason
    assert loaded["ort-int8"].runner is None
    # The others load from the moved folder (paths are relative to the manifest).
    assert (
        loaded["ort-fp32"].ok
        and str(moved) in loaded["ort-fp32"].runner.describe()["artifact"]["path"]
    )
    assert loaded["aoti-fp32"].ok


@pytest.mark.slow
def test_pytorch_engine_needs_the_model_and_names_filter(manifest):
    loaded = runners_from_manifest(manifest, names=["pytorch", "ort-fp32"])
    assert [b.name for b in loaded] == ["pytorch", "ort-fp32"]
    assert loaded[0].record.status == "unavailable"
    assert "pass model=" in loaded[0].record.reason
    assert loaded[1].ok
    with pytest.raises(ValueError, match="not in"):
        runners_from_manifest(manifest, names=["tensorrt-fp16"])


@pytest.mark.slow
def test_a_different_model_is_refused(manifest, unet):
    with pytest.raises(ModelLoadError, match="not the one the engines"):
        runners_from_manifest(manifest, unet)


def test_unavailable_engines_stay_unavailable(unet, batch, tmp_path):
    built = build_engines(["pytorch", "ort-cuda", "tensorrt-int8"], unet, batch, tmp_path,
                          sample=batch)  # fmt: skip
    path = write_manifest(built, tmp_path)
    loaded = runners_from_manifest(path, unet)
    assert [b.record.status for b in loaded] == [b.record.status for b in built]
    assert [b.record.reason for b in loaded] == [b.record.reason for b in built]
    assert loaded[0].ok


def test_bad_manifests_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot read"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(ModelLoadError, match=r"is not a segshield\.engines/1 manifest"):
        runners_from_manifest(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        write_manifest([], tmp_path)


# ------------------------------------------------------------------ reproducible hashes

ONNX_ENGINES = ["pytorch", "ort-fp32", "ort-fp16", "ort-int8"]


def _artifact_hashes(path) -> dict[tuple[str, str], tuple[str, str]]:
    data = json.loads(path.read_text())
    return {
        (e["name"], a["role"]): (a["sha256"], a.get("content_sha256"))
        for e in data["engines"]
        for a in e["artifacts"]
        if a["sha256"] is not None
    }


def _build_twice(names, model, images, tmp_path):
    paths = []
    for k in ("a", "b"):
        built = build_engines(names, model, images, tmp_path / k, sample=images)
        assert all(b.ok for b in built), [(b.name, b.record.reason) for b in built]
        paths.append(write_manifest(built, tmp_path / k))
    return paths


@pytest.mark.slow
def test_two_builds_give_identical_hashes_for_every_onnx_artifact(
    bundled_unet, nuclei_test, tmp_path
):
    """model.onnx, FP16, INT8 and ORT's optimised graph: the same bytes, the same hashes.
    (The bundled model: its widths get ONNX Runtime's NCHWc layout nodes, whose names ORT
    hands out in no fixed order.)"""
    builds = _build_twice(ONNX_ENGINES, bundled_unet, nuclei_test.images, tmp_path)
    first, second = (_artifact_hashes(p) for p in builds)
    assert set(first) >= {
        ("ort-fp32", "onnx"),
        ("ort-fp32", "ort-optimized"),
        ("ort-fp16", "onnx"),
        ("ort-int8", "onnx"),
    }
    assert first == second
    for sha, content in first.values():
        assert content == sha  # single files: the content digest is the file's digest
    data = json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())
    assert set(data["hashes"]) == {"sha256", "content_sha256"}


@pytest.mark.slow
def test_two_aoti_builds_give_the_same_content_hash(unet, batch, tmp_path):
    """The .pt2 file's bytes differ (random serialization id); its content digest does not."""
    from segshield.exporters.aoti import aoti_unavailable_reason

    if aoti_unavailable_reason("cpu", "fp32"):
        pytest.skip(aoti_unavailable_reason("cpu", "fp32"))
    first, second = (
        _artifact_hashes(p) for p in _build_twice(["pytorch", "aoti-fp32"], unet, batch, tmp_path)
    )
    key = ("aoti-fp32", "pt2")
    assert first[key][1] == second[key][1]
    assert len(first[key][1]) == 64 and first[key][1] != first[key][0]
