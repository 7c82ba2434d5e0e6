"""Engine cache: engines built by earlier audits, reused when nothing they depend on changed.

One entry per engine, in ``<cache dir>/<engine>/<key>/``: the built files under ``files/``
(paths as in the build folder) and ``entry.json`` (the key's inputs, the engine's record with
each file's SHA-256, and the FP32 ONNX export facts). The key (`engine_key`) hashes the engine
and its spec, the model's fingerprint (class and state-dict bytes), the input shape, the build
options the engine depends on, the calibration images' digest (static INT8 only) and the
library versions, so changing the engine list reuses the other engines' entries.

An entry is written into a temporary folder inside the cache dir and renamed into place, so a
reader never sees half an entry; when another process (a torchrun rank) stored the same key
first, its entry is kept. `EngineCache.place` copies an entry's files into an audit's engines
folder and checks the copies' SHA-256: a corrupt or tampered entry is discarded with a warning
(the caller rebuilds). A cached engine proves nothing by its hashes: callers re-measure its
parity on their own images (`remeasure_parity`). Only engines that built and loaded are cached.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segshield.engines.build import BuildOptions, BuiltEngine
from segshield.engines.records import EngineRecord, relative_path
from segshield.engines.registry import ENGINE_SPECS
from segshield.exporters.onnx import EXPORT_FORMAT
from segshield.hashing import canonical_json, sha256_bytes, sha256_file
from segshield.lazy import installed_version

logger = logging.getLogger(__name__)

CACHE_SCHEMA = "segshield.engine-cache/1"
ENTRY_NAME = "entry.json"
FILES = "files"
# Options only static INT8 engines depend on (calibration and the INT8 recipe search); the
# calibration label is provenance, not an input (the images' digest is).
_INT8_ONLY = (
    "calibration_method", "calibration_batch_size", "int8_search", "threshold",
    "activation", "health_ok_min", "health_failed_below",
)  # fmt: skip
_OVERLAP_NOTE = "parity images are also calibration images"


def default_cache_dir() -> Path:
    """$SEGSHIELD_CACHE_DIR/engines, else $XDG_CACHE_HOME/segshield/engines, else
    ~/.cache/segshield/engines."""
    if os.environ.get("SEGSHIELD_CACHE_DIR"):
        return Path(os.environ["SEGSHIELD_CACHE_DIR"]).expanduser() / "engines"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "segshield" / "engines"
    return Path.home() / ".cache" / "segshield" / "engines"


def cache_versions() -> dict[str, Any]:
    """The library versions (and CPU architecture) a cached engine is valid for."""
    import torch

    import segshield

    return {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "onnx": installed_version("onnx"),
        "onnxruntime": installed_version("onnxruntime"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }


def _gpu(options: BuildOptions) -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    index = options.cuda_device
    return {
        "name": torch.cuda.get_device_name(index),
        "capability": list(torch.cuda.get_device_capability(index)),
        "tensorrt": installed_version("tensorrt"),
    }


@dataclass(frozen=True)
class CacheKey:
    """What one cached engine depends on (`inputs`, JSON) and its digest."""

    engine: str
    inputs: dict[str, Any]

    @property
    def digest(self) -> str:
        return sha256_bytes(canonical_json(self.inputs))

    @property
    def relpath(self) -> str:
        """The entry's folder inside the cache dir."""
        return f"{self.engine}/{self.digest[:32]}"


def engine_key(
    name: str,
    model_fingerprint: str,
    options: BuildOptions,
    input_chw: tuple[int, ...],
    calibration_sha256: str | None,
) -> CacheKey:
    """The cache key of engine `name` built from a model with `model_fingerprint`
    (`segshield.models.module_fingerprint`) for (C, H, W) inputs."""
    spec = ENGINE_SPECS[name]
    opts = options.to_dict()
    opts.pop("calibration_source", None)
    if not spec.needs_calibration:
        opts = {k: v for k, v in opts.items() if k not in _INT8_ONLY}
    graph = spec.onnx_graph
    inputs = {
        "schema": CACHE_SCHEMA,
        "engine": name,
        "spec": {
            "backend": spec.backend, "precision": spec.precision, "device": spec.device,
            "provider": spec.provider, "onnx_graph": None if graph is None else str(graph),
        },
        "model": model_fingerprint,
        "input_chw": [int(d) for d in input_chw],
        "onnx_export_format": EXPORT_FORMAT,  # dynamic height/width since format 2
        "options": opts,
        "calibration": calibration_sha256 if spec.needs_calibration else None,
        "versions": cache_versions(),
        "gpu": _gpu(options) if spec.device == "cuda" else None,
    }  # fmt: skip
    return CacheKey(name, inputs)


@dataclass
class CachedEngine:
    """An entry read from the cache: the engine's record (artifact paths relative to the
    entry's files folder), the ONNX export facts and when it was stored."""

    key: CacheKey
    entry: Path
    record: EngineRecord
    onnx_export: dict[str, Any] | None
    created_at: str


class EngineCache:
    """The engine cache in folder `root` (created when the first entry is stored)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.relpath

    def discard(self, entry: Path, why: str) -> None:
        """Remove a bad entry (logged as a warning)."""
        logger.warning("engine cache: discarding %s: %s; the engine is rebuilt", entry, why)
        shutil.rmtree(entry, ignore_errors=True)

    def lookup(self, key: CacheKey) -> CachedEngine | None:
        """The entry of `key`, or None (absent, or unreadable: then discarded)."""
        entry = self.entry_dir(key)
        path = entry / ENTRY_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != CACHE_SCHEMA or data.get("key") != key.digest:
                raise ValueError("its key does not match")
            if data.get("inputs") != key.inputs:
                raise ValueError("its key inputs do not match")
            record = EngineRecord.from_dict(data["record"])
            if any(Path(a.path).is_absolute() or ".." in Path(a.path).parts
                   for a in record.artifacts):  # fmt: skip
                raise ValueError("a file lies outside the entry")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.discard(entry, f"unreadable entry ({exc})")
            return None
        export, created = data.get("onnx_export"), data.get("created_at", "")
        return CachedEngine(key, entry, record, export, created)

    def store(self, key: CacheKey, built: BuiltEngine, base: str | os.PathLike[str]) -> bool:
        """Cache a built engine whose artifact paths lie inside `base`; False when it is not
        cacheable (not ok, files outside `base`) or another process stored `key` first."""
        if not built.ok:
            return False
        base = Path(base).resolve()
        record = built.record.relative_to(base)
        if any(Path(a.path).is_absolute() for a in record.artifacts):
            return False
        final = self.entry_dir(key)
        if (final / ENTRY_NAME).is_file():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key.engine}-", dir=self.root))
        try:
            for artifact in record.artifacts:
                _copy(base / artifact.path, tmp / FILES / artifact.path, artifact.sha256 is None)
            entry = {
                "schema": CACHE_SCHEMA,
                "key": key.digest,
                "inputs": key.inputs,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "record": record.to_dict(),
                "onnx_export": _onnx_export(built, base),
            }
            (tmp / ENTRY_NAME).write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if (final / ENTRY_NAME).is_file():
                logger.info("engine cache: %s was stored by another process", final)
            else:
                logger.warning("engine cache: cannot store %s: %s", key.engine, exc)
            return False
        logger.info("engine cache: stored %s in %s", key.engine, final)
        return True

    def place(self, cached: CachedEngine, out_dir: str | os.PathLike[str]) -> EngineRecord | None:
        """Copy a cached engine's files into `out_dir/<engine>/` and check their SHA-256;
        return its record with absolute paths there, or None (entry discarded) when a file
        is missing or changed."""
        out = Path(out_dir).resolve()
        name = cached.record.name
        artifacts = []
        for artifact in cached.record.artifacts:
            rel = (
                artifact.path if artifact.path.startswith(f"{name}/") else f"{name}/{artifact.path}"
            )
            src, dst = cached.entry / FILES / artifact.path, out / rel
            try:
                _copy(src, dst, artifact.sha256 is None)
            except OSError as exc:
                self.discard(cached.entry, f"{artifact.path} cannot be read ({exc})")
                return None
            if artifact.sha256 is not None and sha256_file(dst) != artifact.sha256:
                dst.unlink(missing_ok=True)
                self.discard(cached.entry, f"{artifact.path} changed since it was stored")
                return None
            artifacts.append(replace(artifact, path=str(dst)))
        return replace(
            cached.record,
            artifacts=artifacts,
            providers=list(cached.record.providers),
            notes=list(cached.record.notes),
            details=dict(cached.record.details),
        )


def placed_onnx_export(cached: CachedEngine, record: EngineRecord) -> dict[str, Any] | None:
    """The cached ONNX export facts, with the path of the placed file that holds that
    export (None when the engine did not carry it)."""
    if not cached.onnx_export:
        return None
    sha = cached.onnx_export.get("sha256")
    path = next((a.path for a in record.artifacts if sha and a.sha256 == sha), None)
    return {**cached.onnx_export, "path": path, "from_engine_cache": True}


def refresh_calibration_overlap(record: EngineRecord, calibration: Any, sample: Any) -> None:
    """Recount the parity images that are also calibration images (this audit's sample, not
    the one the cached engine was built with)."""
    if "parity_images_in_calibration" not in record.details or calibration is None:
        return
    from types import SimpleNamespace

    from segshield.engines.backends import BuildResult, add_calibration_overlap

    result = BuildResult(details={})
    add_calibration_overlap(SimpleNamespace(calibration=calibration, sample=sample), result)  # type: ignore[arg-type]
    record.details.update(result.details)
    record.notes = [n for n in record.notes if _OVERLAP_NOTE not in n] + result.notes


def _onnx_export(built: BuiltEngine, base: Path) -> dict[str, Any] | None:
    export = built.info.onnx_export if built.info is not None else None
    if not export or "sha256" not in export:
        return None
    out = dict(export)
    if out.get("path"):
        out["path"] = relative_path(str(out["path"]), base)
    return out


def _copy(src: Path, dst: Path, folder: bool) -> None:
    """Copy a file (through a temporary file and a rename: ranks placing the same engine
    into one folder never see half a file), or a folder artifact (maybe absent), to `dst`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not folder:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            Path(tmp).unlink(missing_ok=True)
    elif src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        dst.mkdir(exist_ok=True)


__all__ = [
    "CACHE_SCHEMA",
    "CacheKey",
    "CachedEngine",
    "EngineCache",
    "cache_versions",
    "default_cache_dir",
    "engine_key",
    "placed_onnx_export",
    "refresh_calibration_overlap",
]
