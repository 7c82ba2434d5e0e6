"""EngineRecord: the one engine record, JSON-ready for the manifest and the audit report."""

from __future__ import annotations

import json
from pathlib import Path

from segshield.engines import Artifact, EngineBuildRecord, EngineRecord
from segshield.enums import Status

# The keys of the audit report's engine entry today; to_dict() must keep producing them.
REPORT_KEYS = {
    "name", "kind", "precision", "providers", "status", "reason", "artifact", "sha256",
    "parity", "build_seconds", "device", "notes", "artifacts",
}  # fmt: skip


def _record(tmp_path: Path) -> EngineRecord:
    onnx = tmp_path / "engines" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"onnx bytes")
    cache = tmp_path / "engines" / "trt_cache"
    cache.mkdir()
    return EngineRecord(
        "ort-trt",
        "onnxruntime",
        "fp32",
        "cuda",
        providers=["TensorrtExecutionProvider"],
        artifacts=[Artifact.of("onnx", onnx), Artifact.of("engine-cache", cache)],
        build_seconds=1.5,
        parity={"flip_share": 0.0},
        notes=["a note"],
        details={"input_chw": [1, 8, 8]},
    )


def test_to_dict_is_json_and_a_superset_of_the_report_entry(tmp_path):
    record = _record(tmp_path)
    data = json.loads(json.dumps(record.to_dict()))
    assert set(data) >= REPORT_KEYS
    assert data["status"] == "ok"
    assert data["artifact"] == record.primary.path == record.artifact
    assert data["sha256"] == record.primary.sha256 == record.sha256
    assert len(data["sha256"]) == 64
    assert data["artifacts"][1] == {
        "role": "engine-cache",
        "path": str(tmp_path / "engines" / "trt_cache"),
        "sha256": None,
        "bytes": None,
    }


def test_from_dict_round_trips_and_ignores_unknown_keys(tmp_path):
    record = _record(tmp_path)
    data = {**record.to_dict(), "future_key": 1}
    data["artifacts"][0]["future_artifact_key"] = "x"
    again = EngineRecord.from_dict(data)
    assert again == record
    assert isinstance(again.status, Status) and again.status == "ok"


def test_status_strings_become_the_enum():
    record = EngineRecord("ort-cuda", "onnxruntime", status="unavailable", reason="no GPU")
    assert record.status is Status.UNAVAILABLE
    assert record.to_dict()["status"] == "unavailable"
    assert record.primary is None and record.artifact is None and record.sha256 is None


def test_from_dict_of_an_entry_with_only_artifact_and_sha256():
    entry = {"name": "ort-fp32", "kind": "onnxruntime", "artifact": "engines/model.onnx",
             "sha256": "ab" * 32, "status": "ok"}  # fmt: skip
    record = EngineRecord.from_dict(entry)
    assert record.artifact == "engines/model.onnx" and record.sha256 == "ab" * 32
    assert record.device is None and record.precision == "fp32"


def test_relative_to_makes_paths_inside_base_relative(tmp_path):
    record = _record(tmp_path)
    outside = Artifact("onnx", "/elsewhere/model.onnx", "cd" * 32, 3)
    record.artifacts.append(outside)
    moved = record.relative_to(tmp_path)
    assert [a.path for a in moved.artifacts] == [
        "engines/model.onnx",
        "engines/trt_cache",
        "/elsewhere/model.onnx",
    ]
    assert moved.to_dict()["artifact"] == "engines/model.onnx"
    assert moved.sha256 == record.sha256
    # A copy: the original keeps its absolute paths and its own lists.
    assert record.artifact == str(tmp_path / "engines" / "model.onnx")
    moved.notes.append("only on the copy")
    assert record.notes == ["a note"]


def test_engine_build_record_is_the_same_type():
    assert EngineBuildRecord is EngineRecord
