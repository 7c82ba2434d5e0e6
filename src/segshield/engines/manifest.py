"""The engines manifest: what `segshield export` built, so `segshield audit` can reuse it.

`write_manifest(built, out_dir)` writes `out_dir/manifest.json`: every engine's name,
precision, providers, status, artifact files (paths relative to the manifest, SHA-256, size),
clean parity against the PyTorch source, build time and notes, plus what all engines share
(model fingerprint, parity/calibration image digests, options, FP32 ONNX export, versions).

`runners_from_manifest(path, model)` loads the engines again without rebuilding. Every
artifact's SHA-256 is checked before it is loaded; an engine whose files changed, or that
this machine cannot run, comes back with status "error"/"unavailable" and a reason.

What each artifact's hashes cover (also written into the manifest as ``hashes``):

* ``sha256``: the file's bytes, as written; checked before the engine is loaded. It is
  reproducible (the same for two builds of the same model with the same segshield, torch,
  onnxruntime and CPU) for ``model.onnx``, ``model.fp16.onnx``, ``model.int8.qdq.onnx`` and
  ``model.ort-optimized.onnx`` (whose ORT-invented node names are made positional, see
  :mod:`segshield.exporters.reproducible`); not for an AOTInductor ``model.pt2``, whose
  archive carries a random serialization id and, when freshly compiled, the build's
  temporary paths in its C++ sources.
* ``content_sha256``: what the engine computes with, reproducible for every artifact: the
  file's SHA-256 for ONNX files and other single files; for a ``.pt2`` package the digest
  of its entries without the serialization id and the compile-command comments
  (:func:`segshield.exporters.reproducible.pt2_content_sha256`). Compare builds with it.
  A ``.pt2``'s compiled library embeds the inductor cache directory's path (debug info and
  kernel names), so its digest matches only between builds that use the same cache path
  (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from segshield.engines.build import (
    BuildInfo,
    BuildOptions,
    BuiltEngine,
    load_engine,
    model_fingerprint,
)
from segshield.engines.records import Artifact, EngineRecord, relative_path
from segshield.engines.registry import ENGINE_SPECS
from segshield.enums import Status
from segshield.errors import EngineUnavailableError, ModelLoadError
from segshield.hashing import sha256_file

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "segshield.engines/1"


def write_manifest(built: list[BuiltEngine], out_dir: str | os.PathLike[str]) -> Path:
    """Write `out_dir/manifest.json` for engines from one `build_engines` call; return its path.

    Artifact paths are stored relative to `out_dir` when they lie inside it, so the folder can
    be moved as a whole.

    Raises:
        ValueError: `built` is empty or mixes engines from different build calls.
    """
    if not built:
        raise ValueError("write_manifest needs at least one built engine")
    infos = {id(b.info) for b in built}
    if len(infos) != 1 or built[0].info is None:
        raise ValueError("write_manifest needs engines from one build_engines call")
    info: BuildInfo = built[0].info
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    engines = [_with_content_hashes(b.record.relative_to(out).to_dict(), out) for b in built]
    info_dict = info.to_dict()
    if info_dict.get("onnx_export") and info_dict["onnx_export"].get("path"):
        info_dict["onnx_export"]["path"] = relative_path(info_dict["onnx_export"]["path"], out)
    info_dict.pop("out_dir", None)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hashes": HASHES,
        **info_dict,
        "engines": engines,
    }
    path = out / MANIFEST_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    logger.info("wrote engines manifest %s (%d engines)", path, len(engines))
    return path


HASHES = {
    "sha256": "SHA-256 of the artifact file's bytes, checked before loading; not reproducible "
    "between builds for an AOTInductor .pt2 (random serialization id, build paths)",
    "content_sha256": "SHA-256 of what the engine computes with, reproducible between builds "
    "with the same versions and CPU: the file's SHA-256, or for a .pt2 package its entries "
    "without the serialization id and the C++ compile-command comments (its compiled "
    "library embeds the inductor cache directory path: the same path is needed too)",
}


def content_sha256(path: str | os.PathLike[str]) -> str:
    """The reproducible digest of one artifact file (see the module docstring)."""
    from segshield.exporters.reproducible import pt2_content_sha256

    if Path(path).suffix == ".pt2":
        return pt2_content_sha256(path)
    return sha256_file(path)


def _with_content_hashes(engine: dict[str, Any], base: Path) -> dict[str, Any]:
    for artifact in engine.get("artifacts") or []:
        if artifact.get("sha256") is None:
            continue  # a folder (engine cache)
        path = Path(artifact["path"])
        artifact["content_sha256"] = content_sha256(path if path.is_absolute() else base / path)
    return engine


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a manifest file (or the manifest.json inside a folder) and check its schema."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read engines manifest {p}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ModelLoadError(f"{p} is not a {MANIFEST_SCHEMA} manifest (schema {got!r})")
    return data


def runners_from_manifest(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    *,
    names: list[str] | None = None,
) -> list[BuiltEngine]:
    """Load the engines of a manifest without rebuilding them.

    Args:
        path: manifest.json, or the folder holding it.
        model: the FP32 PyTorch source model. Needed for the "pytorch" engine; when given, its
            state-dict fingerprint must match the one the engines were built from.
        names: load only these engines (default: all, in manifest order).

    Returns one BuiltEngine per engine with the recorded parity/notes and, for status "ok",
    a loaded runner. Engines recorded as unavailable/error stay so; an engine whose artifact is
    missing or whose SHA-256 differs becomes "error"; one this machine cannot run becomes
    "unavailable".

    Raises:
        ModelLoadError: unreadable manifest, or `model` is not the model the engines came from.
        ValueError: a name in `names` is not in the manifest.
    """
    manifest_path = Path(path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / MANIFEST_NAME
    data = read_manifest(manifest_path)
    base = manifest_path.resolve().parent
    if model is not None:
        got = model_fingerprint(model)
        if got != data.get("model_fingerprint"):
            raise ModelLoadError(
                f"the model given ({type(model).__name__}, fingerprint {got[:12]}) is not the "
                f"one the engines in {manifest_path} were built from (fingerprint "
                f"{str(data.get('model_fingerprint'))[:12]}); rebuild with segshield export"
            )
    options = BuildOptions.from_dict(data.get("options", {}))
    info = BuildInfo(
        model_class=data.get("model_class", ""),
        model_fingerprint=data.get("model_fingerprint", ""),
        model_parameters=int(data.get("model_parameters", 0)),
        sample=data.get("sample", {}),
        calibration=data.get("calibration"),
        options=data.get("options", {}),
        onnx_export=data.get("onnx_export"),
        out_dir=str(base),
        versions=data.get("versions", {}),
    )
    records = [EngineRecord.from_dict(e) for e in data.get("engines", [])]
    if names is not None:
        known = {r.name for r in records}
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(
                f"engines {missing} are not in {manifest_path}; it has {sorted(known)}"
            )
        records = [r for r in records if r.name in names]
    out = []
    for record in records:
        record.artifacts = [
            replace(a, path=str((base / a.path).resolve())) for a in record.artifacts
        ]
        out.append(BuiltEngine(record, _load(record, model, options), info))
    return out


def _load(record: EngineRecord, model: nn.Module | None, options: BuildOptions) -> Any:
    """The record's runner, or None with the record's status/reason updated."""
    if record.status != Status.OK:
        return None
    if record.name not in ENGINE_SPECS:
        record.status, record.reason = Status.ERROR, f"unknown engine {record.name!r} in manifest"
        return None
    for artifact in record.artifacts:
        problem = _verify(artifact)
        if problem:
            record.status, record.reason = Status.ERROR, problem
            logger.error("engine %s: %s", record.name, problem)
            return None
    try:
        runner = load_engine(record, model, options)
    except EngineUnavailableError as exc:  # also: this machine cannot run the engine
        record.status, record.reason = Status.UNAVAILABLE, str(exc)
        return None
    except Exception as exc:  # one engine failing to load must not lose the others
        record.status, record.reason = Status.ERROR, f"{type(exc).__name__}: {exc}"
        logger.error("engine %s failed to load: %s", record.name, record.reason)
        return None
    record.providers = list(runner.providers)
    return runner


def _verify(artifact: Artifact) -> str | None:
    path = Path(artifact.path)
    if artifact.sha256 is None:  # a folder (engine cache): may legitimately be empty/absent
        return None
    if not path.is_file():
        return f"artifact {artifact.role} {path} is missing"
    digest = sha256_file(path)
    if digest != artifact.sha256:
        return (
            f"artifact {artifact.role} {path.name} changed since it was built: sha256 "
            f"{digest[:12]}… != manifest {artifact.sha256[:12]}…; rebuild with segshield export"
        )
    return None


__all__ = [
    "HASHES",
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "content_sha256",
    "read_manifest",
    "runners_from_manifest",
    "write_manifest",
]
