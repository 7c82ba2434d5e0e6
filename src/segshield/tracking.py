"""Optional MLflow tracking of a finished audit: one run per audit with the configuration as
params, the report's numbers as metrics, its provenance as tags and the written reports as
artifacts. MLflow (``pip install "segshield[mlflow]"``, the skinny client) is imported only
here, only when tracking is asked for.

Metric keys: ``{engine}.{attack}.{loss}.{eps}.{metric}`` per cell (eps as ``k_255`` or a
decimal; metric dice, iou, attack_success, disagreement), ``{engine}.clean.{dice|iou}``,
``{engine}.worst_case.{eps}.{metric}``, ``{engine}.certified.r_{radius}.{metric}``,
``{engine}.health.agreement``, and ``gate.passed`` / ``gate.n_failed`` when gated."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from segshield.epsilon import format_epsilon
from segshield.errors import SegShieldError
from segshield.results import AuditReport, EngineEval
from segshield.results.evaluation import certified_rows

log = logging.getLogger(__name__)

INSTALL_HINT = 'MLflow tracking needs MLflow: pip install "segshield[mlflow]"'
# MLflow's limits (mlflow.utils.validation), fixed here so no MLflow import is needed to use them
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
PARAMS_PER_BATCH = 100  # params and tags together
METRICS_PER_BATCH = 1000
CELL_METRICS = ("dice", "iou", "attack_success", "disagreement")
CLEAN_METRICS = ("dice", "iou")
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. ]")


@dataclass(frozen=True)
class TrackingSettings:
    """Where an audit is tracked. tracking_uri None: MLflow's own default
    (``MLFLOW_TRACKING_URI``); log_engines: also log the engine binaries (``engines/``)."""

    tracking_uri: str | None = None
    experiment: str = "segshield"
    log_engines: bool = False


def metric_key(*parts: object) -> str:
    """A metric or param key MLflow accepts: the parts joined with '.', every character but
    letters, digits, ``_-. `` replaced by '_' (so ``8/255`` -> ``8_255``), at most 250 long."""
    key = ".".join(_BAD_KEY_CHARS.sub("_", str(p)) for p in parts)
    return key.strip(" ")[:MAX_KEY_LENGTH] or "_"


def epsilon_label(eps: float) -> str:
    """``8/255`` -> ``8_255``, ``0.01`` -> ``0.01`` (a key part)."""
    return format_epsilon(eps).replace("/", "_")


def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as flat params: keys joined with '.', values as strings truncated to
    MLflow's param length (lists and None as written in report.json)."""
    flat: dict[str, str] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, f"{key}."))
        else:
            flat[metric_key(key)] = _text(value)[:MAX_PARAM_LENGTH]
    return flat


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return "None" if value is None else str(value)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: nothing to log


def _eval_values(ev: EngineEval, names: tuple[str, ...]) -> dict[str, float]:
    values = {name: _number(ev.value(name)) for name in names}
    return {k: v for k, v in values.items() if v is not None}


def audit_metrics(report: AuditReport) -> dict[str, float]:
    """Every number of the report tracked as a metric, by key (see the module docstring)."""
    out: dict[str, float] = {}

    def put(value: Any, *parts: object) -> None:
        number = _number(value)
        if number is not None:
            out[metric_key(*parts)] = number

    for name, ev in report.clean.items():
        for metric, value in _eval_values(ev, CLEAN_METRICS).items():
            put(value, name, "clean", metric)
    for cell in report.ok_cells():
        eps = epsilon_label(cell.epsilon)
        for name, ev in cell.engines.items():
            for metric, value in _eval_values(ev, CELL_METRICS).items():
                put(value, name, cell.attack, cell.loss, eps, metric)
    for wc in report.evaluation.worst_case if report.evaluation else []:
        for name, ev in wc.engines.items():
            for metric, value in _eval_values(ev, CELL_METRICS).items():
                put(value, name, "worst_case", epsilon_label(wc.epsilon), metric)
    for name, radius, values in certified_rows(report.certified):
        for metric, value in values.items():
            put(value, name, "certified", f"r_{radius:g}", metric)
    for record in report.engines:
        put((record.health or {}).get("mask_dice"), record.name, "health", "agreement")
    if report.verdict:
        put(int(bool(report.verdict.get("passed"))), "gate", "passed")
        put(report.verdict.get("n_failed"), "gate", "n_failed")
    return out


def audit_tags(report: AuditReport) -> dict[str, str]:
    """The run's tags: provenance hashes, version, task, model and the gate verdict."""
    prov = report.provenance or {}
    tags = {
        "segshield.version": prov.get("segshield"),
        "segshield.task": str(report.task),
        "segshield.model": report.model.get("name") or report.model.get("class"),
        "segshield.model_fingerprint": prov.get("model_fingerprint"),
        "segshield.weights_sha256": prov.get("weights_sha256"),
        "segshield.onnx_sha256": prov.get("onnx_sha256"),
        "segshield.data_sha256": prov.get("data_sha256"),
        "segshield.started_at": prov.get("started_at"),
        "segshield.command": prov.get("command"),
    }
    if report.verdict:
        tags["segshield.verdict"] = "PASS" if report.verdict.get("passed") else "FAIL"
    return {k: str(v)[:MAX_TAG_LENGTH] for k, v in tags.items() if v not in (None, "")}


def import_mlflow() -> Any:
    """The mlflow module, or a SegShieldError with the install command."""
    try:
        import mlflow
    except ImportError as exc:
        raise SegShieldError(INSTALL_HINT) from exc
    return mlflow


def log_audit(report: AuditReport, files: dict[str, Path], settings: TrackingSettings) -> str:
    """Log one audit as an MLflow run (params, metrics, tags, the report files and the
    engines manifest) and return the run id. The run is marked FAILED if logging breaks."""
    import_mlflow()
    with _file_store_allowed(settings.tracking_uri):
        return _log_run(report, files, settings)


def _log_run(report: AuditReport, files: dict[str, Path], settings: TrackingSettings) -> str:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    check_tracking(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(settings.experiment)
    )
    model = report.model.get("name") or report.model.get("class") or "model"
    started = (report.provenance or {}).get("started_at", "")
    run = client.create_run(experiment_id, run_name=f"{model} {started}".strip())
    run_id = run.info.run_id
    try:
        stamp = int(time.time() * 1000)
        params = [Param(k, v) for k, v in flatten_params(report.config).items()]
        tags = [RunTag(k, v) for k, v in audit_tags(report).items()]
        metrics = [Metric(k, v, stamp, 0) for k, v in audit_metrics(report).items()]
        for batch in _chunks([*params, *tags], PARAMS_PER_BATCH):
            client.log_batch(
                run_id,
                params=[p for p in batch if isinstance(p, Param)],
                tags=[t for t in batch if isinstance(t, RunTag)],
            )
        for batch in _chunks(metrics, METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=batch)
        _log_files(client, run_id, files, settings.log_engines)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    log.info(
        "logged the audit to MLflow run %s (experiment %r, %d metrics)",
        run_id,
        settings.experiment,
        len(metrics),
    )
    return run_id


def _log_files(client: Any, run_id: str, files: dict[str, Path], log_engines: bool) -> None:
    """The report files at the artifact root; the engines manifest (or, with log_engines,
    the whole engines folder) under ``engines/``."""
    engines_dir: Path | None = None
    for path in files.values():
        path = Path(path)
        if path.parent.name == "engines":
            engines_dir = path.parent
        elif path.is_file():
            client.log_artifact(run_id, str(path))
    if engines_dir is None and "json" in files:
        candidate = Path(files["json"]).parent / "engines"
        engines_dir = candidate if candidate.is_dir() else None
    if engines_dir is None:
        return
    if log_engines:
        client.log_artifacts(run_id, str(engines_dir), "engines")
    elif (engines_dir / "manifest.json").is_file():
        client.log_artifact(run_id, str(engines_dir / "manifest.json"), "engines")


def check_tracking(uri: str | None) -> None:
    """Refuse early, with what to do: MLflow not installed (the install hint), or a sqlite
    store (MLflow 3's default) without SQLAlchemy, which the skinny client cannot open."""
    import importlib.util

    mlflow = import_mlflow()
    resolved = uri or mlflow.get_tracking_uri()
    if urlparse(resolved).scheme == "sqlite" and importlib.util.find_spec("sqlalchemy") is None:
        raise SegShieldError(
            f"MLflow tracking store {resolved} needs the full MLflow (pip install mlflow); "
            "with mlflow-skinny give --mlflow-tracking-uri an MLflow server (http://...) or "
            "a folder (file:///.../mlruns)"
        )


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextlib.contextmanager
def _file_store_allowed(uri: str | None) -> Iterator[None]:
    """MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE is set; a ``file:``
    URI (or a local path) given explicitly is taken as that opt-in while the audit is logged."""
    local = uri is not None and urlparse(uri).scheme in ("", "file")
    if not local or os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
