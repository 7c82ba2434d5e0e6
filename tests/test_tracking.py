"""MLflow tracking of audits (segshield.tracking) against a real local MLflow file store."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.api import AuditOutcome, audit
from segshield.audits import AuditConfig
from segshield.audits.checkpoint import audit_key
from segshield.errors import SegShieldError
from segshield.gate import policy_from_dict
from segshield.tracking import (
    INSTALL_HINT,
    TrackingSettings,
    epsilon_label,
    flatten_params,
    import_mlflow,
    log_audit,
    metric_key,
)

MlflowClient = pytest.importorskip("mlflow.tracking").MlflowClient

FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"


@contextlib.contextmanager
def _reader(uri: str) -> Iterator[MlflowClient]:
    """A client on the file store (reading one back needs MLflow 3's opt-in too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FILE_STORE, "true")
        yield MlflowClient(tracking_uri=uri)


def _only_run(uri: str, experiment: str = "segshield"):
    with _reader(uri) as client:
        exp = client.get_experiment_by_name(experiment)
        assert exp is not None
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) == 1
        arts = sorted(a.path for a in client.list_artifacts(runs[0].info.run_id))
    return runs[0], arts


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditOutcome, str]:
    root = tmp_path_factory.mktemp("tracked")
    uri = (root / "mlruns").as_uri()
    config = AuditConfig(
        out_dir=root / "audit",
        limit=2,
        attacks=("fgsm", "pgd"),
        epsilons=(2 / 255, 8 / 255),
        steps=2,
        engines=("pytorch",),
        bench=False,
        panels=0,
        probe_images=2,
        n_boot=0,
        mlflow=True,
        mlflow_tracking_uri=uri,
    )
    policy = policy_from_dict({"rules": [{"metric": "dice", "attack": "fgsm", "min": 0.0}]})
    assert FILE_STORE not in os.environ
    outcome = audit(config, policy)
    assert FILE_STORE not in os.environ  # the opt-in lasts while the audit is logged only
    return outcome, uri


def test_run_holds_params_metrics_tags_and_artifacts(tracked) -> None:
    outcome, uri = tracked
    report = outcome.report
    run, artifacts = _only_run(uri)
    assert run.info.run_id == outcome.mlflow_run_id
    assert run.info.status == "FINISHED"
    assert run.info.run_name.endswith(report.provenance["started_at"])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["steps"] == "2"
    assert params["attacks"] == "[fgsm, pgd]"
    assert params["model.allow_pickle"] == "False"
    assert params["model.factory_kwargs"] == "{}"
    assert params["mlflow"] == "True"
    cell = next(c for c in report.cells if c.attack == "pgd" and c.epsilon == 8 / 255)
    source = cell.engines["pytorch"]
    assert metrics["pytorch.pgd.bce.8_255.dice"] == pytest.approx(source.metrics.dice)
    assert metrics["pytorch.pgd.bce.8_255.iou"] == pytest.approx(source.metrics.iou)
    assert metrics["pytorch.pgd.bce.8_255.attack_success"] == pytest.approx(source.attack_success)
    assert "pytorch.fgsm.bce.2_255.dice" in metrics
    assert metrics["pytorch.clean.dice"] == pytest.approx(report.clean["pytorch"].metrics.dice)
    worst = report.evaluation.worst_at(8 / 255).engines["pytorch"]
    assert metrics["pytorch.worst_case.8_255.attack_success"] == pytest.approx(worst.attack_success)
    assert metrics["gate.passed"] == 1.0
    assert metrics["gate.n_failed"] == 0.0
    assert tags["segshield.verdict"] == "PASS"
    assert tags["segshield.data_sha256"] == report.provenance["data_sha256"]
    assert tags["segshield.version"] == report.provenance["segshield"]
    assert tags["segshield.task"] == str(report.task)
    if report.provenance.get("weights_sha256"):
        assert tags["segshield.weights_sha256"] == report.provenance["weights_sha256"]
    assert len(report.provenance["model_fingerprint"]) == 64
    assert tags["segshield.model_fingerprint"] == report.provenance["model_fingerprint"]
    expected = {"report.json", "report.md", "report.html", "junit.xml", "results.csv"}
    assert expected | {"summary.md"} <= set(artifacts)


def test_certified_metrics_and_engines_folder(tracked, tmp_path: Path) -> None:
    outcome, _ = tracked
    report = replace(
        outcome.report,
        certified={"engines": {"pytorch": {"radii": [0.0, 0.25], "certified_dice": [0.9, 0.5]}}},
        verdict={"passed": False, "n_failed": 2},
    )
    engines = tmp_path / "out" / "engines"
    engines.mkdir(parents=True)
    (engines / "manifest.json").write_text("{}")
    (engines / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "out" / "report.json").write_text("{}")
    files = {"json": tmp_path / "out" / "report.json", "engines": engines / "manifest.json"}
    uri = (tmp_path / "mlruns").as_uri()
    log_audit(report, files, TrackingSettings(uri, "other", log_engines=True))
    run, artifacts = _only_run(uri, "other")
    assert run.data.metrics["pytorch.certified.r_0.25.certified_dice"] == 0.5
    assert run.data.metrics["gate.passed"] == 0.0
    assert run.data.tags["segshield.verdict"] == "FAIL"
    assert artifacts == ["engines", "report.json"]
    with _reader(uri) as client:
        inside = sorted(a.path for a in client.list_artifacts(run.info.run_id, "engines"))
    assert inside == ["engines/manifest.json", "engines/model.onnx"]


def test_cli_audit_with_mlflow(tmp_path: Path) -> None:
    from segshield.cli.main import app

    uri = (tmp_path / "mlruns").as_uri()
    args = ["audit", "--out", str(tmp_path / "o"), "--limit", "1", "--attacks", "fgsm"]
    args += ["--epsilons", "8/255", "--engines", "pytorch", "--no-bench", "--no-checks"]
    args += ["--mlflow", "--mlflow-tracking-uri", uri, "--mlflow-experiment", "cli"]
    res = CliRunner().invoke(app, [*args, "--mlflow-log-engines"])
    assert res.exit_code == 0, res.output
    run, artifacts = _only_run(uri, "cli")
    assert f"logged to MLflow run {run.info.run_id}" in res.output
    assert "pytorch.fgsm.bce.8_255.dice" in run.data.metrics
    assert "report.json" in artifacts
    assert "engines" in artifacts  # --mlflow-log-engines: the engines folder too


def test_metric_keys_are_sanitised() -> None:
    assert metric_key("ort-int8", "pgd", "bce", epsilon_label(8 / 255), "dice") == (
        "ort-int8.pgd.bce.8_255.dice"
    )
    assert epsilon_label(0.01) == "0.01"
    assert metric_key("a:b", "c/d", "é[x]") == "a_b.c_d.__x_"
    assert len(metric_key("x" * 400)) == 250
    assert flatten_params({"a": {"b": [1, 2], "c": None}, "d": "z" * 7000}) == {
        "a.b": "[1, 2]",
        "a.c": "None",
        "d": "z" * 6000,
    }


def test_missing_mlflow_gives_the_install_hint(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(SegShieldError, match=r"pip install \"segshield\[mlflow\]\""):
        import_mlflow()
    config = AuditConfig(out_dir=tmp_path / "o", engines=("pytorch",), mlflow=True)
    with pytest.raises(SegShieldError) as err:
        audit(config)  # refused before the audit runs
    assert str(err.value) == INSTALL_HINT
    assert not (tmp_path / "o" / "report.json").exists()


def test_mlflow_failure_keeps_the_reports(tracked, tmp_path: Path) -> None:
    outcome, _ = tracked
    config = replace(
        AuditConfig(**{**_config_fields(outcome), "out_dir": tmp_path / "o"}),
        mlflow_tracking_uri="unknown-scheme://nowhere",
    )
    with pytest.raises(SegShieldError, match=r"the reports are written in .*MLflow logging"):
        audit(config)
    assert (tmp_path / "o" / "report.json").is_file()


def _config_fields(outcome: AuditOutcome) -> dict:
    raw = dict(outcome.report.config)
    keep = {"limit", "steps", "bench", "panels", "probe_images", "n_boot", "mlflow"}
    return {
        **{k: raw[k] for k in keep},
        "attacks": ("fgsm",),
        "epsilons": (8 / 255,),
        "engines": ("pytorch",),
    }


def test_mlflow_settings_do_not_change_the_resume_key(tmp_path: Path) -> None:
    base = AuditConfig(out_dir=tmp_path, engines=("pytorch",))
    tracked = replace(base, mlflow=True, mlflow_tracking_uri="file:///x", mlflow_experiment="e")
    key = {"model_fingerprint": "m", "data_sha256": "d"}
    assert audit_key(base, **key) == audit_key(tracked, **key)


def test_mlflow_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mlflow_experiment"):
        AuditConfig(out_dir=tmp_path, mlflow_experiment=" ")
    with pytest.raises(ValueError, match="mlflow_tracking_uri"):
        AuditConfig(out_dir=tmp_path, mlflow_tracking_uri="")


def test_sqlite_store_without_sqlalchemy_is_refused_before_the_audit(
    monkeypatch, tmp_path: Path
) -> None:
    import importlib.util

    if importlib.util.find_spec("sqlalchemy") is not None:
        pytest.skip("SQLAlchemy is installed: MLflow can open a sqlite store")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default sqlite:///mlflow.db is in the working folder
    config = AuditConfig(out_dir=tmp_path / "o", engines=("pytorch",), mlflow=True)
    with pytest.raises(SegShieldError, match="--mlflow-tracking-uri"):
        audit(config)
    assert not (tmp_path / "o" / "report.json").exists()
