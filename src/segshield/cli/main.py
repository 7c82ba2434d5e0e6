"""`segshield` commands: thin wrappers that parse options, build a frozen config, call one
library function, render, and set the exit code (0 ok, 1 gate failed, 2 usage/input error).

Shared option types and helpers live in `segshield.cli.options`, the audit's option types in
`segshield.cli.audit_options`, the help layout in `segshield.cli.help_format`; the engine
commands (`engines`, `export`, `bench`) in `segshield.cli.engine_commands`, `gate` and
`report` in `segshield.cli.report_commands`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segshield.cli import (
    compare_command,
    engine_commands,
    harden_command,
    report_commands,
    train_command,
)
from segshield.cli.audit_options import (
    AsmaSteps,
    AttackAlpha,
    AttackSteps,
    AttackTarget,
    AuditData,
    AuditDataset,
    AuditEngines,
    AuditLimit,
    AuditOut,
    BatchSize,
    Bench,
    Certify,
    CertifyImages,
    CertifyN,
    CertifySigma,
    Channels,
    ChannelsLast,
    Checks,
    Device,
    EngineCache,
    EngineCacheDir,
    EngineFiles,
    Intensity,
    KeepEmptySlices,
    LabelGroups,
    Losses,
    Mlflow,
    MlflowExperiment,
    MlflowLogEngines,
    MlflowTrackingUri,
    NumClasses,
    Percentiles,
    PolicyFile,
    ProbeImages,
    Resume,
    SeaMembers,
    Seed,
    SettingsFile,
    SliceAxis,
    Strict,
    Task,
    VolumeMode,
    VolumeSize,
    Window,
)
from segshield.cli.audit_settings import audit_config_and_policy
from segshield.cli.errors import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    GuardedGroup,
    error_boundary,
    set_debug,
    setup_logging,
)
from segshield.cli.help_format import ATTACKS, DATA, MODEL, OUTPUT
from segshield.cli.options import (
    Attacks,
    AuditWeights,
    CalibrationData,
    CalibrationMethod,
    Dataset,
    Debug,
    DeferredDefaults,
    EnginesDir,
    Epsilons,
    Model,
    ModelKwargs,
    Size,
    Split,
    TrustPickle,
    Verbose,
    Version,
    check_out,
    command_line,
    console,
    epsilons_option,
    json_object,
    split_list,
)

app = typer.Typer(
    cls=GuardedGroup,
    name="segshield",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
# Every command's class: ``{NAME}`` defaults and segshield's help (panels, names never cut).
_COMMAND = DeferredDefaults
# Panels of `segshield --help`'s command list.
_AUDITS, _REPORTS, _ENGINES, _TRAINING = "Audit", "Reports and gate", "Engines", "Training"
# `audit` parameters that are not AuditConfig settings, and those named differently there.


@app.callback()
def root(debug: Debug = False, version: Version = False) -> None:
    """Robustness audits of medical segmentation models and their deployed engines.

    Exit codes: 0 pass, 1 a gate rule crossed (or --strict found failures), 2 no verdict
    (bad input, settings or environment, or an internal error).
    """
    set_debug(debug)


@app.command(cls=_COMMAND, rich_help_panel=_AUDITS)
def audit(
    ctx: typer.Context,
    out: AuditOut = Path("{DEFAULT_OUT_DIR}"),
    model: Model = None,
    weights: AuditWeights = None,
    trust_pickle: TrustPickle = False,
    model_kwargs: ModelKwargs = None,
    data: AuditData = None,
    num_classes: NumClasses = 1,
    task: Task = "auto",
    label_groups: LabelGroups = None,
    dataset: AuditDataset = "nuclei",
    split: Split = "test",
    size: Size = 128,
    limit: AuditLimit = None,
    intensity: Intensity = "auto",
    window: Window = None,
    percentiles: Percentiles = None,
    channels: Channels = None,
    volume_mode: VolumeMode = "slices",
    slice_axis: SliceAxis = "axial",
    keep_empty_slices: KeepEmptySlices = False,
    volume_size: VolumeSize = "32,64,64",
    attacks: Attacks = "{DEFAULT_ATTACKS}",
    losses: Losses = "{DEFAULT_LOSSES}",
    epsilons: Epsilons = "default",
    steps: AttackSteps = 10,
    alpha: AttackAlpha = None,
    engines: AuditEngines = "{DEFAULT_ENGINES}",
    engines_dir: EnginesDir = None,
    engine_file: EngineFiles = None,
    calibration_method: CalibrationMethod = "minmax",
    calibration_data: CalibrationData = None,
    bench: Bench = True,
    target: AttackTarget = "empty",
    asma_steps: AsmaSteps = 300,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    device: Device = "cpu",
    channels_last: ChannelsLast = False,
    engine_cache: EngineCache = True,
    engine_cache_dir: EngineCacheDir = None,
    resume: Resume = True,
    sea_members: SeaMembers = "{DEFAULT_SEA_MEMBERS}",
    checks: Checks = True,
    probe_images: ProbeImages = 16,
    certify: Certify = False,
    certify_sigma: CertifySigma = 0.25,
    certify_n: CertifyN = 100,
    certify_images: CertifyImages = 16,
    mlflow: Mlflow = False,
    mlflow_tracking_uri: MlflowTrackingUri = None,
    mlflow_experiment: MlflowExperiment = "segshield",
    mlflow_log_engines: MlflowLogEngines = False,
    policy: PolicyFile = None,
    config: SettingsFile = None,
    strict: Strict = False,
    verbose: Verbose = False,
) -> None:
    """Attack the model on PyTorch, replay on the engines, write report.json and report.md."""
    setup_logging(verbose)
    from segshield.api import audit as run

    with error_boundary():
        cfg, pol = audit_config_and_policy(ctx, config, policy)
        outcome = _run_with_progress(run, cfg, pol, command_line(ctx))
    raise typer.Exit(_print_audit(outcome, strict))


def _run_with_progress(run: Any, cfg: Any, pol: Any, command: str) -> Any:
    """`segshield.api.audit` with its progress shown (`segshield.cli.progress`)."""
    from segshield.cli.progress import cell_progress

    with cell_progress(console, "preparing (data, model, ONNX export)") as on_progress:
        return run(cfg, pol, on_progress, command)


def _print_audit(outcome: Any, strict: bool = False) -> int:
    """Print the engines, the summary tables, the verdict and what `--strict` refuses
    (warnings without it); returns the exit code."""
    from segshield.gate.strict import strict_problems

    from .render import print_engines, print_problems, print_verdict, summary_tables

    report = outcome.report
    if report is None:  # a torchrun rank > 0: rank 0 prints and writes
        return EXIT_OK
    print_engines(console, report)
    for table in summary_tables(report):
        console.print(table)
    console.print(
        f"audit took {report.provenance['seconds']:.1f} s; wrote "
        + ", ".join(str(p) for p in outcome.files.values()),
        markup=False,
    )
    if getattr(outcome, "mlflow_run_id", None):
        console.print(f"logged to MLflow run {outcome.mlflow_run_id}", markup=False)
    problems = strict_problems(report)
    gate_passed = True
    if outcome.gate is not None:
        print_verdict(console, outcome.gate)
        gate_passed = outcome.gate.passed
    print_problems(console, problems, strict)
    if not gate_passed or (strict and problems):
        return EXIT_GATE_FAILED
    return EXIT_OK


def _seed_epsilons() -> str:
    """``0, 1/255, ... 0.3``: the 'seed' preset as help shows it."""
    from segshield.epsilon import SEED_CLASSIFIER_EPSILONS, format_epsilon

    return ", ".join(map(format_epsilon, SEED_CLASSIFIER_EPSILONS))


@app.command("audit-classifier", cls=_COMMAND, rich_help_panel=_AUDITS)
def audit_classifier(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output folder.", rich_help_panel=OUTPUT)] = Path(
        "segshield-classifier-out"
    ),
    model: Annotated[
        str | None,
        typer.Option(
            help="Your classifier factory package.module:callable (needs --weights).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="A classifier model card .json, TorchScript file, or the weights of --model "
            "(default: the bundled patch CNN).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    trust_pickle: TrustPickle = False,
    model_kwargs: ModelKwargs = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your segmentation data to cut into labelled patches (needs --model or "
            "--weights: your classifier).",
            rich_help_panel=DATA,
        ),
    ] = None,
    dataset: Dataset = "nuclei",
    split: Split = "test",
    patch: Annotated[
        int, typer.Option(min=8, help="Patch side in pixels.", rich_help_panel=DATA)
    ] = 32,
    stride: Annotated[
        int, typer.Option(min=1, help="Step between patches in pixels.", rich_help_panel=DATA)
    ] = 32,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Audit the first N patches.", rich_help_panel=DATA)
    ] = None,
    attacks: Attacks = "{DEFAULT_ATTACKS}",
    epsilons: Annotated[
        str,
        typer.Option(help=f"Comma list, or 'seed' ({_seed_epsilons()}).", rich_help_panel=ATTACKS),
    ] = "seed",
    steps: Annotated[
        int, typer.Option(min=1, help="Steps of iterative attacks.", rich_help_panel=ATTACKS)
    ] = 10,
    seed: Seed = 0,
    strict: Strict = False,
    verbose: Verbose = False,
) -> None:
    """Attack a CNN classifier (seed mammography): accuracy and SSIM vs ε. The same audit as
    `segshield audit` with task "classification" on labelled patches; the same reports."""
    setup_logging(verbose)
    from segshield.api import audit as run
    from segshield.api import classifier_config

    with error_boundary():
        from segshield.errors import SegShieldError
        from segshield.models import ModelSpec

        if data is not None and model is None and weights is None:
            raise SegShieldError(
                "--data without --model/--weights would audit the bundled nuclei patch "
                "classifier on your images: pass --model/--weights for your classifier, or "
                "omit --data to audit the bundled one"
            )
        check_out(out)
        spec = ModelSpec(
            factory=model,
            weights=weights,
            factory_kwargs=json_object(model_kwargs),
            allow_pickle=trust_pickle,
        )
        options: dict[str, Any] = {
            "model": spec,
            "data": data,
            "dataset": dataset,
            "split": split,
            "patch": patch,
            "stride": stride,
            "limit": limit,
            "attacks": split_list(attacks),
            "epsilons": epsilons_option(epsilons),
            "steps": steps,
            "seed": seed,
        }
        try:
            cfg = classifier_config(out, **options)
        except ValueError as exc:
            raise SegShieldError(f"invalid classifier audit options: {exc}") from exc
        outcome = _run_with_progress(run, cfg, None, command_line(ctx))
    raise typer.Exit(_print_audit(outcome, strict))


app.command(cls=_COMMAND, rich_help_panel=_REPORTS)(report_commands.gate)
app.command(cls=_COMMAND, rich_help_panel=_REPORTS)(report_commands.report)
app.command(cls=_COMMAND, rich_help_panel=_REPORTS)(compare_command.compare)
app.command("engines", cls=_COMMAND, rich_help_panel=_ENGINES)(engine_commands.list_engines)
app.command(cls=_COMMAND, rich_help_panel=_ENGINES)(engine_commands.export)
app.command("bench", cls=_COMMAND, rich_help_panel=_ENGINES)(engine_commands.bench_command)
app.command(cls=_COMMAND, rich_help_panel=_TRAINING)(train_command.train)
app.command(cls=_COMMAND, rich_help_panel=_TRAINING)(harden_command.harden)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
