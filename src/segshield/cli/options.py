"""Reusable CLI pieces: option types shared by several commands, defaults looked up from the
library's constants, and the small parsers the commands use.

Defaults that live next to torch-importing code (the engine matrix, the default attacks and
losses) are written as ``{NAME}`` markers and filled in by `DeferredDefaults` when a command
runs or shows its help, so importing the CLI (and `segshield gate`/`report`) stays torch-free.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from segshield.epsilon import ADVUNET_EPSILONS, DEFAULT_EPSILONS, format_epsilon, parse_epsilons
from segshield.errors import SegShieldError

console = Console()

_MARKER = re.compile(r"\{([A-Z][A-Z_]*)\}")


@functools.cache
def deferred_values() -> dict[str, Any]:
    """The values behind the ``{NAME}`` markers (imports torch: call only from a command)."""
    from segshield.audits.config import DEFAULT_ATTACKS, DEFAULT_LOSSES, DEFAULT_SEA_MEMBERS
    from segshield.audits.settings import DEFAULT_OUT_DIR
    from segshield.engines import CPU_ENGINES, DEFAULT_ENGINES, ENGINE_SPECS

    return {
        "DEFAULT_ATTACKS": ",".join(DEFAULT_ATTACKS),
        "DEFAULT_LOSSES": ",".join(DEFAULT_LOSSES),
        "DEFAULT_SEA_MEMBERS": ",".join(DEFAULT_SEA_MEMBERS),
        "DEFAULT_ENGINES": ",".join(DEFAULT_ENGINES),
        "DEFAULT_OUT_DIR": DEFAULT_OUT_DIR,
        "CPU_ENGINES": ", ".join(CPU_ENGINES),
        "GPU_ENGINES": ", ".join(n for n, s in ENGINE_SPECS.items() if s.device != "cpu"),
    }


def _fill(text: str, values: dict[str, Any]) -> str:
    return _MARKER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


class DeferredDefaults(TyperCommand):
    """A command whose option defaults and help may hold ``{NAME}`` markers (see
    `deferred_values`), replaced the first time click asks for the parameters, which it does
    before parsing and before printing help."""

    _filled = False

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        if not self._filled:
            self._filled = True
            values = deferred_values()
            for param in params:
                default = param.default
                if isinstance(default, (str, Path)) and (m := _MARKER.fullmatch(str(default))):
                    param.default = values[m.group(1)]
                if getattr(param, "help", None):
                    param.help = _fill(param.help, values)
        return params


def literal(text: str) -> str:
    """`text` as help shows it: rich markup would take "[tool.segshield]" for a style tag and
    drop it (plain click help, TYPER_USE_RICH=0, shows text as written)."""
    import typer.core

    return escape(text) if getattr(typer.core, "HAS_RICH", True) else text


def split_list(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def epsilons_option(value: str, flag: str = "--epsilons") -> tuple[float, ...]:
    """A comma list or preset of epsilons; a bad one is a SegShieldError naming the option."""
    try:
        return parse_epsilons(value)
    except ValueError as exc:
        raise SegShieldError(f"{flag}: {exc}") from exc


def json_object(value: str | None, flag: str = "--model-kwargs") -> dict[str, Any]:
    """A JSON object option (None -> {}); anything else is a SegShieldError naming `flag`."""
    if value is None:
        return {}
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as exc:
        raise SegShieldError(f"{flag} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise SegShieldError(f"{flag} must be a JSON object")
    return obj


def explicit(ctx: typer.Context) -> set[str]:
    """Names of the options the user actually typed (not left at their defaults)."""
    found = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            found.add(name)
    return found


def command_line(ctx: typer.Context) -> str:
    """The command as it could be re-typed: its path plus every option not at its default
    (rebuilt from the parsed options, so it is right under CliRunner and `python -m` too)."""
    words = ctx.command_path.split()
    words[0] = "segshield"
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        is_option = getattr(param, "param_type_name", "") == "option"
        if value is None or value == param.default or not is_option:
            if not is_option and value is not None:
                words.append(str(value))
            continue
        flag = max(param.opts, key=len)
        if isinstance(value, bool):
            words.append(flag if value else (param.secondary_opts or [flag])[0])
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def flag_of(ctx: typer.Context, name: str) -> str:
    """The longest option string of parameter `name` (``out`` -> ``--out``)."""
    for param in ctx.command.params:
        if param.name == name:
            return max(param.opts, key=len)
    return name


def _advunet_range() -> str:
    return f"{format_epsilon(ADVUNET_EPSILONS[0])}..{format_epsilon(ADVUNET_EPSILONS[-1])}"


EPSILONS_HELP = (
    "Comma list (0.01 or 4/255), 'default' ("
    + ", ".join(format_epsilon(e) for e in DEFAULT_EPSILONS)
    + f") or 'advunet' ({_advunet_range()})."
)

# Options shared by several commands.
Verbose = Annotated[bool, typer.Option("--verbose", "-v")]
Dataset = Annotated[str, typer.Option(help="Bundled dataset: nuclei or lesions.")]
Split = Annotated[str, typer.Option(help="Bundled split: test or train.")]
Size = Annotated[int, typer.Option(help="Images are resized to size x size.")]
Attacks = Annotated[str, typer.Option(help="Comma list of attacks.")]
Engines = Annotated[str, typer.Option(help="Comma list of engines.")]
Epsilons = Annotated[str, typer.Option(help=EPSILONS_HELP)]
Model = Annotated[
    str | None,
    typer.Option(help="Your model factory package.module:callable (default: bundled U-Net)."),
]
TrustPickle = Annotated[
    bool, typer.Option(help="Allow unpickling a checkpoint (runs code from the file).")
]
CalibrationData = Annotated[
    Path | None,
    typer.Option(help="INT8 calibration images (default: the bundled training split)."),
]
CalibrationMethod = Annotated[
    str, typer.Option(help="Static INT8 calibration: minmax, entropy or percentile.")
]
EnginesDir = Annotated[
    Path | None, typer.Option(help="Use engines built by `segshield export` (manifest).")
]

# Options of `segshield audit` (kept here so that the command's signature stays readable).
AuditOut = Annotated[Path, typer.Option(help="Output folder (report.json, report.md, model.onnx).")]
AuditWeights = Annotated[
    Path | None,
    typer.Option(
        help="Weights (.safetensors or state dict), a TorchScript file, or a model card .json."
    ),
]
ModelKwargs = Annotated[
    str | None,
    typer.Option(help="Keyword arguments of the factory as JSON, e.g. '{\"out_channels\": 3}'."),
]
AuditData = Annotated[
    Path | None, typer.Option(help="Your dataset: images/+masks/ folders or BUSI layout.")
]
NumClasses = Annotated[
    int,
    typer.Option(
        min=1,
        help="1: binary model (one sigmoid logit); N > 1: softmax model, masks are label "
        "maps 0..N-1.",
    ),
]
AuditLimit = Annotated[int | None, typer.Option(min=1, help="Audit the first N images.")]
Losses = Annotated[
    str,
    typer.Option(
        help="Comma list of attack losses: bce, dice, focal, dice_focal, masked_ce, "
        "balanced_masked_ce, js."
    ),
]
AttackSteps = Annotated[int, typer.Option(min=1, help="Steps of iterative attacks.")]
AttackAlpha = Annotated[
    float | None, typer.Option(help="Step size of iterative attacks (default eps/4).")
]
AuditEngines = Annotated[
    str,
    typer.Option(
        help="Comma list of engines (CPU: {CPU_ENGINES}; GPU: {GPU_ENGINES}; see "
        "`segshield engines`)."
    ),
]
Bench = Annotated[bool, typer.Option(help="Measure each engine's latency into the report.")]
AttackTarget = Annotated[
    str,
    typer.Option(
        help="Target of targeted attacks (asma): empty, other, shift:DY,DX, scale:F, file:PATH."
    ),
]
AsmaSteps = Annotated[int, typer.Option(min=1, help="Step budget of ASMA.")]
BatchSize = Annotated[int, typer.Option(min=1)]
PolicyFile = Annotated[
    Path | None, typer.Option(help="Gate policy (TOML): exit 1 when a rule is crossed.")
]
SettingsFile = Annotated[
    Path | None,
    typer.Option(
        help=literal(
            "Settings file (segshield.toml, or pyproject.toml with [tool.segshield]); "
            "default: look for either in the current folder. Options given here override it. "
            "trust_pickle cannot be set there: only --trust-pickle can."
        )
    ),
]
Device = Annotated[
    str,
    typer.Option(help="Where the source model and attacks run: cpu, cuda, cuda:N or auto."),
]
ChannelsLast = Annotated[
    bool, typer.Option(help="Run the source model in channels-last (NHWC) memory format.")
]
EngineCache = Annotated[
    bool,
    typer.Option(help="Reuse engines built by earlier audits (re-checked for parity here)."),
]
EngineCacheDir = Annotated[
    Path | None,
    typer.Option(help="Engine cache folder (default $SEGSHIELD_CACHE_DIR or ~/.cache/segshield)."),
]
Resume = Annotated[
    bool,
    typer.Option(help="Reuse the finished cells of an interrupted audit of the same settings."),
]
# Evaluation strength (audits/evaluation.py): the ensemble, the masking checks, certification.
SeaMembers = Annotated[
    str,
    typer.Option(
        help="Members of the 'sea' ensemble attack: comma list of ATTACK[:LOSS] "
        "(LOSS '*' = the cell's loss)."
    ),
]
Checks = Annotated[
    bool,
    typer.Option(
        help="Run the gradient-masking / weak-evaluation checks (probes on a few images)."
    ),
]
ProbeImages = Annotated[int, typer.Option(min=1, help="Images the masking checks probe.")]
Certify = Annotated[
    bool,
    typer.Option(help="Certify by randomized smoothing (source and every engine that runs here)."),
]
CertifySigma = Annotated[float, typer.Option(help="Gaussian noise σ of the smoothing.")]
CertifyN = Annotated[int, typer.Option(min=1, help="Noisy samples per image to certify.")]
CertifyImages = Annotated[
    int | None, typer.Option(min=1, help="Certify the first N images (default 16).")
]
Mlflow = Annotated[
    bool,
    typer.Option(help='Log the audit to MLflow (pip install "segshield[mlflow]").'),
]
MlflowTrackingUri = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or MLflow's own); "
        "a file: URI or folder uses MLflow's file store."
    ),
]
MlflowExperiment = Annotated[str, typer.Option(help="MLflow experiment of the audit's run.")]
MlflowLogEngines = Annotated[
    bool, typer.Option(help="Also log the built engine files (engines/) to MLflow.")
]
Strict = Annotated[
    bool,
    typer.Option(
        help="Exit 1 when a cell failed, an engine failed to build or its health is failed "
        "(engines unavailable on this machine do not count); without it they are warnings."
    ),
]
Debug = Annotated[
    bool,
    typer.Option(
        "--debug",
        envvar="SEGSHIELD_DEBUG",
        help="Print the traceback of an error (errors still exit 2 with one message).",
    ),
]


def check_out(path: Path, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be one before any work is done."""
    from segshield.audits.settings import output_dir_problem

    problem = output_dir_problem(path)
    if problem is not None:
        raise SegShieldError(f"{flag}: {problem}")
