"""The option types of `segshield audit` (and `audit-classifier`), each in its help panel, so
that the command's signature stays readable.

Adding an option: one alias here, e.g. ``Window = Annotated[int, typer.Option(help="...",
rich_help_panel=ENGINES)]`` (the panel constants: `segshield.cli.help_format`), and one
parameter of `segshield.cli.main.audit`; an AuditConfig field of the same name makes it a
setting of the settings file too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segshield.cli.help_format import ATTACKS, DATA, ENGINES, EVALUATION, GATE, MODEL, OUTPUT, RUN
from segshield.cli.options import complete_list, engine_names, loss_names

AuditOut = Annotated[
    Path,
    typer.Option(
        help="Output folder (report.json, report.md, model.onnx).", rich_help_panel=OUTPUT
    ),
]
AuditData = Annotated[
    Path | None,
    typer.Option(help="Your dataset: images/+masks/ folders or BUSI layout.", rich_help_panel=DATA),
]
NumClasses = Annotated[
    int,
    typer.Option(
        min=1,
        help="1: binary model (one sigmoid logit); N > 1: softmax model, masks are label "
        "maps 0..N-1.",
        rich_help_panel=MODEL,
    ),
]
AuditLimit = Annotated[
    int | None, typer.Option(min=1, help="Audit the first N images.", rich_help_panel=DATA)
]
Losses = Annotated[
    str,
    typer.Option(
        help="Comma list of attack losses: {LOSS_NAMES}, or your own package.module:fn or "
        "file.py:fn (a per-image loss (N,), checked on the first batch).",
        autocompletion=complete_list(loss_names),
        rich_help_panel=ATTACKS,
    ),
]
AttackSteps = Annotated[
    int, typer.Option(min=1, help="Steps of iterative attacks.", rich_help_panel=ATTACKS)
]
AttackAlpha = Annotated[
    float | None,
    typer.Option(help="Step size of iterative attacks (default eps/4).", rich_help_panel=ATTACKS),
]
AuditEngines = Annotated[
    str,
    typer.Option(
        help="Comma list of engines (CPU: {CPU_ENGINES}; GPU: {GPU_ENGINES}; see "
        "`segshield engines`).",
        autocompletion=complete_list(engine_names),
        rich_help_panel=ENGINES,
    ),
]
Bench = Annotated[
    bool,
    typer.Option(help="Measure each engine's latency into the report.", rich_help_panel=ENGINES),
]
AttackTarget = Annotated[
    str,
    typer.Option(
        help="Target of targeted attacks (asma): empty, other, shift:DY,DX, scale:F, file:PATH.",
        rich_help_panel=ATTACKS,
    ),
]
AsmaSteps = Annotated[
    int, typer.Option(min=1, help="Step budget of ASMA.", rich_help_panel=ATTACKS)
]
BatchSize = Annotated[
    int,
    typer.Option(min=1, help="Images per batch (attacks and engine runs).", rich_help_panel=RUN),
]
Seed = Annotated[int, typer.Option(help="Seed of random starts and sampling.", rich_help_panel=RUN)]
PolicyFile = Annotated[
    Path | None,
    typer.Option(help="Gate policy (TOML): exit 1 when a rule is crossed.", rich_help_panel=GATE),
]
SettingsFile = Annotated[
    Path | None,
    typer.Option(
        help="Settings file (segshield.toml, or pyproject.toml with [tool.segshield]); "
        "default: look for either in the current folder. Options given here override it. "
        "trust_pickle cannot be set there: only --trust-pickle can.",
        rich_help_panel=RUN,
    ),
]
Device = Annotated[
    str,
    typer.Option(
        help="Where the source model and attacks run: cpu, cuda, cuda:N or auto.",
        rich_help_panel=RUN,
    ),
]
ChannelsLast = Annotated[
    bool,
    typer.Option(
        help="Run the source model in channels-last (NHWC) memory format.", rich_help_panel=RUN
    ),
]
EngineCache = Annotated[
    bool,
    typer.Option(
        help="Reuse engines built by earlier audits (re-checked for parity here).",
        rich_help_panel=RUN,
    ),
]
EngineCacheDir = Annotated[
    Path | None,
    typer.Option(
        help="Engine cache folder (default $SEGSHIELD_CACHE_DIR or ~/.cache/segshield).",
        rich_help_panel=RUN,
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        help="Reuse the finished cells of an interrupted audit of the same settings.",
        rich_help_panel=RUN,
    ),
]
# Evaluation strength (audits/evaluation.py): the ensemble, the masking checks, certification.
SeaMembers = Annotated[
    str,
    typer.Option(
        help="Members of the 'sea' ensemble attack: comma list of ATTACK[:LOSS] "
        "(LOSS '*' = the cell's loss).",
        rich_help_panel=ATTACKS,
    ),
]
Checks = Annotated[
    bool,
    typer.Option(
        help="Run the gradient-masking / weak-evaluation checks (probes on a few images).",
        rich_help_panel=EVALUATION,
    ),
]
ProbeImages = Annotated[
    int,
    typer.Option(min=1, help="Images the masking checks probe.", rich_help_panel=EVALUATION),
]
Certify = Annotated[
    bool,
    typer.Option(
        help="Certify by randomized smoothing (source and every engine that runs here).",
        rich_help_panel=EVALUATION,
    ),
]
CertifySigma = Annotated[
    float,
    typer.Option(help="Gaussian noise σ of the smoothing.", rich_help_panel=EVALUATION),
]
CertifyN = Annotated[
    int,
    typer.Option(min=1, help="Noisy samples per image to certify.", rich_help_panel=EVALUATION),
]
CertifyImages = Annotated[
    int | None,
    typer.Option(
        min=1, help="Certify the first N images (default 16).", rich_help_panel=EVALUATION
    ),
]
Mlflow = Annotated[
    bool,
    typer.Option(
        help='Log the audit to MLflow (pip install "segshield[mlflow]").', rich_help_panel=OUTPUT
    ),
]
MlflowTrackingUri = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or MLflow's own); "
        "a file: URI or folder uses MLflow's file store.",
        rich_help_panel=OUTPUT,
    ),
]
MlflowExperiment = Annotated[
    str, typer.Option(help="MLflow experiment of the audit's run.", rich_help_panel=OUTPUT)
]
MlflowLogEngines = Annotated[
    bool,
    typer.Option(
        help="Also log the built engine files (engines/) to MLflow.", rich_help_panel=OUTPUT
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        help="Exit 1 when a cell failed, an engine failed to build or its health is failed "
        "(engines unavailable on this machine do not count); without it they are warnings.",
        rich_help_panel=GATE,
    ),
]
AuditDataset = Annotated[
    str,
    typer.Option(
        help="Bundled data when --data is not given: nuclei or lesions (2-D tiles and MRI/CT "
        "slices), or volumes (the lesion volumes as NIfTI, split by patient).",
        rich_help_panel=DATA,
    ),
]
Task = Annotated[
    str,
    typer.Option(
        help="What the model predicts: auto (binary for 1 class, else multiclass; multilabel "
        "with --label-groups), binary, multiclass, multilabel.",
        rich_help_panel=MODEL,
    ),
]
LabelGroups = Annotated[
    str | None,
    typer.Option(
        help="Multi-label masks from a label map: name=values per label, separated by ';', "
        "e.g. 'core=1,3;whole=1,2,3;enhancing=3' (labels may overlap).",
        rich_help_panel=MODEL,
    ),
]
Intensity = Annotated[
    str,
    typer.Option(
        help="How raw values become [0, 1]: auto (8-bit by its range, CT by a soft-tissue "
        "window, else percentiles), dtype, window, percentile, minmax or none.",
        rich_help_panel=DATA,
    ),
]
Window = Annotated[
    str | None,
    typer.Option(
        help="CT window CENTER,WIDTH in HU (e.g. 40,400) or a preset: ct-soft-tissue, "
        "ct-lung, ct-liver, ct-bone, ct-brain.",
        rich_help_panel=DATA,
    ),
]
Percentiles = Annotated[
    str | None,
    typer.Option(help="LOW,HIGH for percentile scaling (default 0.5,99.5).", rich_help_panel=DATA),
]
Channels = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Image channels (1 converts colour to grey, 3 keeps RGB or repeats grey); "
        "default: the model's first layer.",
        rich_help_panel=DATA,
    ),
]
VolumeMode = Annotated[
    str,
    typer.Option(
        help="Volumes: slices (a 2-D model on slices), volumes (a 3-D model on whole volumes "
        "resized to --volume-size) or patches (3-D, cut around the lesion).",
        rich_help_panel=DATA,
    ),
]
SliceAxis = Annotated[
    str,
    typer.Option(help="Slices: axial, coronal, sagittal or 0, 1, 2.", rich_help_panel=DATA),
]
KeepEmptySlices = Annotated[
    bool,
    typer.Option(help="Slices: also audit slices without foreground.", rich_help_panel=DATA),
]
VolumeSize = Annotated[
    str,
    typer.Option(help="Volumes and patches: D,H,W (e.g. 32,64,64).", rich_help_panel=DATA),
]
EngineFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--engine-file",
        help="An engine built outside segshield, audited as it is: an ONNX file (any ONNX "
        "Runtime provider; its input name and shape are read from the file and checked "
        "against the data) or a TensorRT plan (.engine/.plan, where TensorRT is installed). "
        "Repeat for several; reported as file:<name>, with parity and health measured "
        "against the source model.",
        rich_help_panel=ENGINES,
    ),
]
