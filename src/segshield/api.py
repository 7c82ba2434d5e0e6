"""The library's front door: one call per CLI command, composing the pipeline stages
(data -> models -> attacks -> exporters -> engines -> metrics -> audits -> reports -> gate)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segshield.audits import AuditReport
from segshield.epsilon import SEED_CLASSIFIER_EPSILONS
from segshield.errors import ReportError, SegShieldError
from segshield.gate import GateResult, Policy, evaluate
from segshield.gate.verify import read_verified_report
from segshield.reports import (
    read_report,
    render_csv,
    render_html,
    render_junit,
    render_markdown,
    render_pr_summary,
    write_json,
)
from segshield.reports.comparison import render_comparison_html, render_comparison_markdown
from segshield.results.comparison import ReleaseComparison, compare_reports

if TYPE_CHECKING:  # the audit runner imports torch: loaded only when an audit runs
    from segshield.audits import AuditConfig
    from segshield.audits.inputs import AuditData
    from segshield.models import LoadedModel, ModelSpec

ProgressFn = Callable[[str, int, int], None]


@dataclass
class AuditOutcome:
    """An audit's report, its gate verdict (when a policy was given) and the files written."""

    report: AuditReport | None  # None on the ranks > 0 of a torchrun audit
    gate: GateResult | None
    files: dict[str, Path] = field(default_factory=dict)
    mlflow_run_id: str | None = None  # the MLflow run, when the audit was tracked


# format name -> (file name in the audit folder, renderer)
FORMATS = {
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
    "csv": "results.csv",
    "summary": "summary.md",
}


def render(report: AuditReport, fmt: str, base_dir: Path | None = None) -> str:
    """One format of a report: md, html (images read from base_dir), junit, csv, summary."""
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report, base_dir=base_dir)
    if fmt == "junit":
        return render_junit(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "summary":
        return render_pr_summary(report)
    raise ReportError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_reports(report: AuditReport, out_dir: Path) -> dict[str, Path]:
    """report.json (the source of truth) and every other format rendered from it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(report, out_dir / "report.json")
    # Render from what was written, so no format can show what the JSON lacks.
    written = read_report(json_path)
    files = {"json": json_path}
    for fmt, name in FORMATS.items():
        path = out_dir / name
        path.write_text(
            render(written, fmt, base_dir=out_dir), newline="" if fmt == "csv" else None
        )
        files[fmt] = path
    return files


def render_report_file(report_path: Path, fmt: str) -> str:
    """Re-render a report.json written earlier (no audit is re-run)."""
    return render(read_report(report_path), fmt, base_dir=Path(report_path).parent)


@dataclass(frozen=True)
class Inputs:
    """What an audit may be handed instead of reading what its config names: a notebook's
    model and data, and attack losses by the name the config lists them under."""

    model: LoadedModel | None = None
    data: AuditData | None = None
    losses: Mapping[str, Callable] = field(default_factory=dict)


def audit(
    config: AuditConfig,
    policy: Policy | None = None,
    progress: ProgressFn | None = None,
    command: str = "",
    inputs: Inputs | None = None,
) -> AuditOutcome:
    """Run the audit, gate it when a policy is given, write the reports into config.out_dir.

    The folder is locked from start to the last report written, and the previous run's
    reports are moved to ``previous/`` first, so a failed run never leaves an older report
    looking current. Under torchrun only rank 0 writes; the other ranks get an outcome
    without a report. ``inputs``: in-memory model, data and losses (segshield.notebook)."""
    from segshield.audits.checkpoint import output_lock, retire

    if config.mlflow:  # MLflow missing, or a store it cannot open: said before the audit
        from segshield.tracking import check_tracking

        check_tracking(config.mlflow_tracking_uri)
    inputs = inputs or Inputs()
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 holds the folder and writes
        return AuditOutcome(_run(config, progress, command, inputs), None)
    with output_lock(config.out_dir):
        retire(config.out_dir, ["report.json", *FORMATS.values()])
        return _audit_and_write(config, policy, progress, command, inputs)


def _run(
    config: AuditConfig, progress: ProgressFn | None, command: str, inputs: Inputs
) -> AuditReport | None:
    from segshield.attacks import registered_losses
    from segshield.audits import run_audit

    with registered_losses(inputs.losses):
        return run_audit(
            config, progress=progress, command=command, model=inputs.model, data=inputs.data
        )


def _audit_and_write(
    config: AuditConfig,
    policy: Policy | None,
    progress: ProgressFn | None,
    command: str,
    inputs: Inputs,
) -> AuditOutcome:
    report = _run(config, progress, command, inputs)
    assert report is not None  # rank 0
    verdict = None
    if policy is not None:
        # The gate runs on the report as written (and refuses it, ReportError, when its
        # values are impossible); the verdict is then added (it is not in the content hash).
        json_path = write_json(report, config.out_dir / "report.json")
        _, verdict = gate_report(json_path, policy)
        report.verdict = verdict.to_dict()
    files = write_reports(report, config.out_dir)
    manifest = config.out_dir / "engines" / "manifest.json"
    if manifest.is_file():
        files["engines"] = manifest
    run_id = _track(report, files, config) if config.mlflow else None
    return AuditOutcome(report, verdict, files, run_id)


def _track(report: AuditReport, files: dict[str, Path], config: AuditConfig) -> str:
    """Log the audit to MLflow; a failure keeps the written reports and exits 2 saying so."""
    import logging

    from segshield.tracking import TrackingSettings, log_audit

    settings = TrackingSettings(
        config.mlflow_tracking_uri, config.mlflow_experiment, config.mlflow_log_engines
    )
    try:
        return log_audit(report, files, settings)
    except Exception as exc:
        logging.getLogger(__name__).debug("MLflow logging failed", exc_info=True)
        lines = str(exc).splitlines() or [""]
        why = lines[0] if isinstance(exc, SegShieldError) else f"{type(exc).__name__}: {lines[0]}"
        raise SegShieldError(
            f"the reports are written in {config.out_dir}; MLflow logging failed: {why}"
        ) from exc


def gate_report(report_path: Path, policy: Policy) -> tuple[AuditReport, GateResult]:
    """Evaluate a policy against a report.json written earlier, after verifying it
    (:func:`segshield.gate.verify.read_verified_report`: a changed or impossible report is
    refused with ReportError; one without an integrity entry is gated as unverified)."""
    report, _ = read_verified_report(report_path)
    return report, evaluate(report, policy)


def compare_report_files(base: Path, new: Path, out_dir: Path | None = None) -> ReleaseComparison:
    """Compare two report.json files written earlier (base = the last release, new = this
    one), each read and verified as the gate reads it (:func:`gate_report`: a changed or
    impossible report is refused with ReportError). With ``out_dir``, writes
    comparison.json, comparison.md and comparison.html there (missing folders created)."""
    base_report, _ = read_verified_report(base)
    new_report, _ = read_verified_report(new)
    comparison = compare_reports(base_report, new_report)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(comparison.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        (out_dir / "comparison.json").write_text(text + "\n", encoding="utf-8")
        (out_dir / "comparison.md").write_text(
            render_comparison_markdown(comparison), encoding="utf-8"
        )
        (out_dir / "comparison.html").write_text(
            render_comparison_html(comparison), encoding="utf-8"
        )
    return comparison


def classifier_config(out_dir: Path, **options: object) -> AuditConfig:
    """The audit configuration of a classifier audit (seed mammography): the same audit with
    task "classification", its seed ε sweep, the source engine only, no latency or panels,
    64 patches per attack batch. ``options`` override any AuditConfig field."""
    from segshield.audits import AuditConfig

    defaults: dict = {
        "task": "classification",
        "epsilons": SEED_CLASSIFIER_EPSILONS,
        "engines": ("pytorch",),
        "bench": False,
        "panels": 0,
        "batch_size": 64,
    }
    return AuditConfig(out_dir=out_dir, **{**defaults, **options})


def export_engines(
    spec: ModelSpec,
    engines: tuple[str, ...],
    out_dir: Path,
    *,
    data: Path | None = None,
    calibration_data: Path | None = None,
    calibration_method: str = "minmax",
    size: int = 128,
) -> tuple[list, Path]:
    """Build engines from the source model into `out_dir` and write manifest.json."""
    from segshield.data import bundled_dataset, dataset_from_path
    from segshield.engines import BuildOptions, build_engines, write_manifest
    from segshield.models import load_model

    loaded = load_model(spec)
    sz = (size, size)
    sample = dataset_from_path(data, size=sz) if data else bundled_dataset("nuclei", "test", sz)
    calib = (
        dataset_from_path(calibration_data, size=sz)
        if calibration_data
        else bundled_dataset("nuclei", "train", sz)
    )
    try:
        options = BuildOptions(
            calibration_method=calibration_method, calibration_source=calib.source
        )
        built = build_engines(
            list(engines),
            loaded.module,
            calib.images,
            out_dir,
            sample=sample.images,
            options=options,
        )
    except ValueError as exc:
        raise SegShieldError(str(exc)) from exc
    return built, write_manifest(built, out_dir)


def run_bench(
    out_dir: Path,
    *,
    engines: tuple[str, ...],
    engines_dir: Path | None,
    batch_sizes: tuple[int, ...],
    attacks: tuple[str, ...],
    steps: int,
    warmup_s: float,
    min_iters: int,
    min_duration_s: float,
    device: str = "cpu",
) -> tuple[dict, dict[str, Path]]:
    """Latency of each engine at each batch size and attack throughput; bench.json + .md.

    device: where the pytorch engine and the attacks run (cpu, cuda, cuda:N or auto; checked
    before any work); the other engines run where their spec says.
    """
    from contextlib import ExitStack

    from segshield.devices import placed, resolve_device

    dev = resolve_device(device)  # before the heavy imports and any work
    from segshield.bench import bench_attacks, bench_engines, bench_markdown, check_attack_names
    from segshield.data import bundled_dataset
    from segshield.engines import TorchRunner, runners_from_manifest
    from segshield.models import ModelSpec, bundled_model

    check_attack_names(attacks)
    loaded = bundled_model()
    test = bundled_dataset("nuclei", "test")
    if engines_dir is not None:
        built = runners_from_manifest(engines_dir, loaded.module)
    else:
        built, _ = export_engines(ModelSpec(), engines, out_dir / "engines")
    with ExitStack() as stack:
        for b in built:
            if b.ok and isinstance(b.runner, TorchRunner):
                stack.enter_context(placed(b.runner.model, dev))
                b.record.device, b.record.providers = dev.type, [str(dev)]
        latency = bench_engines(
            [b.runner for b in built if b.ok],
            test.images,
            batch_sizes,
            warmup_s=warmup_s,
            min_iters=min_iters,
            min_duration_s=min_duration_s,
        )
        stack.enter_context(placed(loaded.module, dev))
        throughput = bench_attacks(loaded.module, attacks, test.images, test.masks, steps)
    result = {
        "schema_version": 1,
        "kind": "segshield.bench",
        "device": str(dev),
        "engines": [b.record.to_dict() for b in built],
        "latency": latency,
        "attack_throughput": throughput,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    md_path = out_dir / "bench.md"
    md_path.write_text(bench_markdown(latency, throughput))
    return result, {"json": json_path, "markdown": md_path}


def audit_before_after(
    before: ModelSpec,
    after: ModelSpec,
    out_dir: Path,
    *,
    dataset: str = "nuclei",
    data: Path | None = None,
    size: int = 128,
    command: str = "",
) -> ReleaseComparison:
    """`segshield harden --audit`: the same quick audit (PGD at 2, 4, 8/255; engines pytorch
    and ort-fp32; no latency bench) of the model ``before`` and ``after`` hardening into
    ``out_dir/before`` and ``out_dir/after``, compared (``before`` as the base) into
    ``out_dir/before_after.{json,md,html}``."""
    from segshield.audits import AuditConfig

    reports = []
    for label, spec in (("before", before), ("after", after)):
        config = AuditConfig(
            out_dir=Path(out_dir) / label,
            model=spec,
            data=data,
            dataset=dataset,
            split="test",
            size=size,
            attacks=("pgd",),
            epsilons=(2 / 255, 4 / 255, 8 / 255),
            engines=("pytorch", "ort-fp32"),
            bench=False,
        )
        report = audit(config, command=command).report
        assert report is not None
        reports.append(report)
    comparison = compare_reports(reports[0], reports[1])
    out = Path(out_dir)
    text = json.dumps(comparison.to_dict(), indent=2, sort_keys=True, allow_nan=False)
    (out / "before_after.json").write_text(text + "\n", encoding="utf-8")
    (out / "before_after.md").write_text(render_comparison_markdown(comparison), encoding="utf-8")
    (out / "before_after.html").write_text(render_comparison_html(comparison), encoding="utf-8")
    return comparison
