"""The engines one audit runs: built from the source model (or reused from the engine cache,
`segshield.engines.cache`, parity measured again), or loaded from an earlier `segshield
export` folder. An engine that cannot be built or run here is kept with its reason; it never
stops the audit."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from segshield.engines import (
    ENGINE_SPECS,
    Artifact,
    BuildOptions,
    BuiltEngine,
    EngineRecord,
    Runner,
    TorchRunner,
    build_engines,
    load_engine,
    remeasure_parity,
    resolve_engine_names,
    runners_from_manifest,
    write_manifest,
)
from segshield.engines.cache import (
    CachedEngine,
    CacheKey,
    EngineCache,
    default_cache_dir,
    engine_key,
    placed_onnx_export,
    refresh_calibration_overlap,
)
from segshield.engines.external import (
    ENGINE_FILE_SUFFIXES,
    ExpectedIO,
    engine_file_name,
    engine_from_file,
)
from segshield.enums import Status, TaskKind
from segshield.errors import EngineUnavailableError, SegShieldError
from segshield.exporters.calibration import images_digest
from segshield.models import LoadedModel, module_fingerprint
from segshield.results import SOURCE_ENGINE
from segshield.tasks import Task

from .config import AuditConfig
from .inputs import AuditData, calibration_images

_NO_CALIBRATION = (
    "static INT8 needs calibration images from the training data: pass --calibration-data "
    "(the audited images are never used for calibration)"
)


@dataclass
class AuditEngine:
    """One engine of the audit: its record (as the report stores it) and its runner (None
    unless it can run)."""

    record: EngineRecord
    runner: Runner | None

    @property
    def name(self) -> str:
        return self.record.name


def _engine(built: BuiltEngine, config: AuditConfig) -> AuditEngine:
    return AuditEngine(built.record.relative_to(config.out_dir), built.runner if built.ok else None)


def parity_sample(config: AuditConfig, data: AuditData):
    """The audited images build-time parity is measured on (the first parity_images; the
    engine health uses every audited image)."""
    return data.images[: max(2, min(len(data), config.parity_images))]


def _from_dir(
    config: AuditConfig, loaded: LoadedModel, names: list[str], data: AuditData, task: Task
) -> tuple[list, dict]:
    assert config.engines_dir is not None
    others = [n for n in names if n != SOURCE_ENGINE]
    try:
        built = runners_from_manifest(config.engines_dir, loaded.module, names=others)
    except ValueError as exc:
        raise SegShieldError(f"--engines-dir {config.engines_dir}: {exc}") from exc
    # Matching hashes prove the files are the ones exported, not that they compute the model:
    # parity is measured again on this audit's images (health follows from the clean run).
    remeasure_parity(
        built, loaded.module, parity_sample(config, data),
        threshold=config.threshold, activation=str(task.activation),
    )  # fmt: skip
    source = AuditEngine(
        EngineRecord(SOURCE_ENGINE, "pytorch", "fp32", device="cpu", providers=["cpu"]),
        TorchRunner(loaded.module),
    )
    info = built[0].info.to_dict() if built and built[0].info else {}
    return [source, *(_engine(b, config) for b in built)], {
        "engines_dir": str(config.engines_dir),
        **info,
    }


def build_options(config: AuditConfig, task: Task, calib_source: str | None) -> BuildOptions:
    """The engine build options an audit's settings ask for."""
    return BuildOptions(
        opset=config.opset,
        export_atol=config.parity_atol,
        export_rtol=config.parity_rtol,
        threshold=config.threshold,
        activation=str(task.activation),
        health_ok_min=config.health_ok_min,
        health_failed_below=config.health_failed_below,
        calibration_method=config.calibration_method,
        calibration_source=calib_source or None,
        int8_search=config.int8_search,
    )


def audit_engines(
    config: AuditConfig, loaded: LoadedModel, data: AuditData, task: Task
) -> tuple[list[AuditEngine], dict]:
    """Build (or load from config.engines_dir, or reuse from the engine cache) every requested
    engine, in the requested order, then the engine files (config.engine_files); returns the
    engines and the build facts for the report (with ``engine_cache``: the cache folder, hits
    and misses)."""
    names = resolve_engine_names(config.engines)
    # Engine files are read and checked first: a file that does not fit fails before builds.
    files = _file_engines(config, data, task, names)
    if config.engines_dir is not None:
        engines, info = _from_dir(config, loaded, names, data, task)
    else:
        engines, info = _built_engines(config, loaded, data, task, names)
    if files:
        # Parity as for engines loaded from a folder: measured on this audit's images.
        remeasure_parity(
            files, loaded.module, parity_sample(config, data),
            threshold=config.threshold, activation=str(task.activation),
        )  # fmt: skip
        for engine in files:
            if engine.record.parity is not None:
                engine.record.parity.pop("manifest", None)  # there is no stored parity
        engines += [_engine(f, config) for f in files]
    return engines, info


def _file_engines(
    config: AuditConfig, data: AuditData, task: Task, taken: list[str]
) -> list[BuiltEngine]:
    """The engines of config.engine_files, checked against the audited images and the task.
    One that cannot run here (TensorRT missing) is kept as unavailable with the reason; a
    file that is missing, unreadable or does not fit the data raises (SegShieldError)."""
    expected = ExpectedIO(
        data.image_shape, task.num_classes, segmentation=task.kind != TaskKind.CLASSIFICATION
    )
    names, out = list(taken), []
    for path in config.engine_files:
        name = engine_file_name(path, names)
        names.append(name)
        try:
            runner, record = engine_from_file(path, expected, name=name)
        except EngineUnavailableError as exc:
            kind = ENGINE_FILE_SUFFIXES[path.suffix.lower()]
            record = EngineRecord(name, kind, "unknown", details={"external": True})
            record.status, record.reason, runner = Status.UNAVAILABLE, str(exc), None
            record.artifacts = [Artifact.of("onnx" if kind == "onnxruntime" else "plan", path)]
        out.append(BuiltEngine(record, runner))
    return out


def _built_engines(
    config: AuditConfig, loaded: LoadedModel, data: AuditData, task: Task, names: list[str]
) -> tuple[list[AuditEngine], dict]:
    """The requested engines built here (or reused from the engine cache)."""
    calib, calib_source = calibration_images(config, names)
    needs_calib = {n for n in names if ENGINE_SPECS[n].precision == "int8"}
    skipped = needs_calib if calib is None else set()
    wanted = [n for n in names if n not in skipped]
    options = build_options(config, task, calib_source)
    sample, out = parity_sample(config, data), config.out_dir / "engines"
    cache = _Cache.open(config, loaded, data, wanted, options, calib)
    hits = cache.lookup(out)
    built = build_engines(
        [n for n in wanted if n not in hits],
        loaded.module,
        calib,
        out,
        sample=sample,
        options=options,
    )
    cache.store(built, out)
    built = _with_hits(built, hits, cache, loaded, sample, calib, task, config.threshold)
    by_name = {b.name: b for b in built}
    engines = []
    for n in names:
        if n in skipped:
            spec = ENGINE_SPECS[n]
            record = EngineRecord(n, spec.kind, spec.precision, spec.device)
            record.status, record.reason = Status.UNAVAILABLE, _NO_CALIBRATION
            engines.append(AuditEngine(record, None))
        else:
            engines.append(_engine(by_name[n], config))
    if built:
        write_manifest(built, out)
    info = built[0].info.to_dict() if built and built[0].info else {}
    return engines, {**info, "engine_cache": cache.summary()}


class _Cache:
    """The engine cache as one audit uses it: keys of its cacheable engines, the entries
    found (loaded from copies in the audit's engines folder) and the engines stored."""

    def __init__(
        self, cache: EngineCache | None, keys: dict[str, CacheKey], options: BuildOptions
    ) -> None:
        self.cache, self.keys, self.options = cache, keys, options
        self.hits: dict[str, tuple[CachedEngine, BuiltEngine]] = {}
        self.stored: list[str] = []

    @classmethod
    def open(
        cls,
        config: AuditConfig,
        loaded: LoadedModel,
        data: AuditData,
        wanted: list[str],
        options: BuildOptions,
        calib: np.ndarray | None,
    ) -> _Cache:
        """Keys of the engines that can be cached and run here; nothing touches the cache
        folder when config.engine_cache is off."""
        if not config.engine_cache:
            return cls(None, {}, options)
        cache = EngineCache(config.engine_cache_dir or default_cache_dir())
        fingerprint = module_fingerprint(loaded.module)
        calib_sha = None if calib is None else images_digest(calib)
        keys = {
            n: engine_key(n, fingerprint, options, data.image_shape, calib_sha)
            for n in wanted
            # nothing is built for the source (the model itself) or an engine not runnable here
            if ENGINE_SPECS[n].backend != "pytorch" and ENGINE_SPECS[n].unavailable_reason() is None
        }
        return cls(cache, keys, options)

    def lookup(self, out: Path) -> dict[str, tuple[CachedEngine, BuiltEngine]]:
        """Engines whose entry is in the cache, copied into `out` and loaded; an entry that
        fails its checks or does not load is discarded (the engine is then rebuilt)."""
        if self.cache is None:
            return self.hits
        for name, key in self.keys.items():
            start = time.perf_counter()
            cached = self.cache.lookup(key)
            record = None if cached is None else self.cache.place(cached, out)
            if cached is None or record is None:
                continue
            try:
                runner = load_engine(record, None, self.options)
            except Exception as exc:  # a stale entry: rebuild it
                self.cache.discard(cached.entry, f"it does not load ({exc})")
                continue
            record.providers = list(runner.providers)
            record.build_seconds = round(time.perf_counter() - start, 3)
            self.hits[name] = (cached, BuiltEngine(record, runner))
        return self.hits

    def store(self, built: list[BuiltEngine], out: Path) -> None:
        if self.cache is None:
            return
        for engine in built:
            key = self.keys.get(engine.name)
            if key is not None and engine.ok and self.cache.store(key, engine, out):
                self.stored.append(engine.name)

    def summary(self) -> dict:
        """JSON facts for the report's build info."""
        if self.cache is None:
            return {"enabled": False}
        hits = list(self.hits)
        return {
            "enabled": True,
            "dir": str(self.cache.root),
            "hits": hits,
            "misses": [n for n in self.keys if n not in hits],
            "stored": list(self.stored),
        }


def _with_hits(
    built: list[BuiltEngine],
    hits: dict[str, tuple[CachedEngine, BuiltEngine]],
    cache: _Cache,
    loaded: LoadedModel,
    sample: np.ndarray,
    calib: np.ndarray | None,
    task: Task,
    threshold: float,
) -> list[BuiltEngine]:
    """The built engines plus the cache hits, all sharing one BuildInfo (the manifest needs
    it). A hit's parity is measured again on this audit's images, never copied."""
    if not hits:
        return built
    reused = [engine for _, engine in hits.values()]
    remeasure_parity(reused, loaded.module, sample, threshold=threshold,
                     activation=str(task.activation))  # fmt: skip
    info = built[0].info if built else None
    for cached, engine in hits.values():
        record = engine.record
        if record.status == Status.ERROR and cache.cache is not None:
            cache.cache.discard(cached.entry, record.reason or "it fails on the audited images")
        refresh_calibration_overlap(record, calib, sample)
        record.details["engine_cache"] = {
            "key": cached.key.digest,
            "stored_at": cached.created_at,
            "built_seconds": cached.record.build_seconds,
        }
        record.notes.append(
            f"reused from the engine cache (built {cached.created_at}); its clean parity is "
            "measured again on this audit's images"
        )
        export = placed_onnx_export(cached, record)
        if info is not None and info.onnx_export is None and export is not None:
            info = replace(info, onnx_export=export)
    for engine in [*built, *reused]:
        engine.info = info
    return [*built, *reused]
