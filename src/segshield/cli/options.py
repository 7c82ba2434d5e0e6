"""Reusable CLI pieces: option types shared by several commands, defaults looked up from the
library's constants, the small parsers the commands use, shell completion and ``--version``.

Every option names its help panel (`segshield.cli.help_format`): adding one to a panel is
``rich_help_panel=ENGINES`` in its ``typer.Option``.

Defaults that live next to torch-importing code (the engine matrix, the default attacks and
losses) are written as ``{NAME}`` markers and filled in by `DeferredDefaults` when a command
runs or shows its help, so importing the CLI (and `segshield gate`/`report`) stays torch-free.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from segshield.cli.help_format import (
    ATTACKS,
    DATA,
    ENGINES,
    MODEL,
    RUN,
    HelpCommand,
)
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
        "ATTACK_NAMES": ", ".join(attack_names()),
        "LOSS_NAMES": ", ".join(loss_names()),
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


class DeferredDefaults(HelpCommand):
    """A command whose option defaults and help may hold ``{NAME}`` markers (see
    `deferred_values`), replaced the first time click asks for the parameters, which it does
    before parsing and before printing help; its help is `HelpCommand`'s (panels). A command
    without markers (gate, report) never calls `deferred_values`, so it stays torch-free."""

    _filled = False

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        if not self._filled:
            self._filled = True
            texts = [str(p.default) for p in params if isinstance(p.default, (str, Path))]
            texts += [p.help for p in params if getattr(p, "help", None)]
            if not any(_MARKER.search(t) for t in texts):
                return params
            values = deferred_values()
            for param in params:
                default = param.default
                if isinstance(default, (str, Path)) and (m := _MARKER.fullmatch(str(default))):
                    param.default = values[m.group(1)]
                if getattr(param, "help", None):
                    param.help = _fill(param.help, values)
        return params


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


def attack_names() -> tuple[str, ...]:
    """The attack registry's names (imports torch)."""
    from segshield.attacks import ATTACKS as REGISTRY

    return tuple(REGISTRY)


def loss_names() -> tuple[str, ...]:
    """The attack-loss registry's names (imports torch)."""
    from segshield.attacks import LOSSES

    return tuple(LOSSES)


def engine_names() -> tuple[str, ...]:
    """Every engine segshield can build (imports torch)."""
    from segshield.engines import ENGINE_SPECS

    return tuple(ENGINE_SPECS)


def complete_list(names: Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """Shell completion of a comma-list option: the last item completes among ``names()``
    (those not listed yet), the items before it are kept (``fgsm,pg`` -> ``fgsm,pgd``)."""

    def complete(incomplete: str) -> list[str]:
        done, _, last = incomplete.rpartition(",")
        typed = set(split_list(done))
        word = last.lstrip()
        prefix = incomplete[: len(incomplete) - len(word)]  # shells keep what starts the same
        return [prefix + n for n in names() if n.startswith(word) and n not in typed]

    return complete


def version_text() -> str:
    """``segshield 0.1.0`` and, on a second line, the torch and onnxruntime versions (read from
    the installed packages: nothing is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import segshield

    def installed(*dists: str) -> str:
        for dist in dists:
            try:
                return version(dist)
            except PackageNotFoundError:
                continue
        return "not installed"

    ort = installed("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml")
    return (
        f"segshield {segshield.__version__}\n"
        f"torch {installed('torch')}, onnxruntime {ort}, python {platform.python_version()}"
    )


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


# Options shared by several commands.
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show INFO log lines.", rich_help_panel=RUN)
]
Dataset = Annotated[
    str, typer.Option(help="Bundled dataset: nuclei or lesions.", rich_help_panel=DATA)
]
Split = Annotated[str, typer.Option(help="Bundled split: test or train.", rich_help_panel=DATA)]
Size = Annotated[int, typer.Option(help="Images are resized to size x size.", rich_help_panel=DATA)]
Attacks = Annotated[
    str,
    typer.Option(
        help="Comma list of attacks: {ATTACK_NAMES}.",
        autocompletion=complete_list(attack_names),
        rich_help_panel=ATTACKS,
    ),
]
Engines = Annotated[
    str,
    typer.Option(
        help="Comma list of engines (see `segshield engines`).",
        autocompletion=complete_list(engine_names),
        rich_help_panel=ENGINES,
    ),
]
Epsilons = Annotated[str, typer.Option(help=EPSILONS_HELP, rich_help_panel=ATTACKS)]
Model = Annotated[
    str | None,
    typer.Option(
        help="Your model factory package.module:callable (default: bundled U-Net).",
        rich_help_panel=MODEL,
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option(
        help="Allow unpickling a checkpoint (runs code from the file).", rich_help_panel=MODEL
    ),
]
CalibrationData = Annotated[
    Path | None,
    typer.Option(
        help="INT8 calibration images (default: the bundled training split).",
        rich_help_panel=ENGINES,
    ),
]
CalibrationMethod = Annotated[
    str,
    typer.Option(
        help="Static INT8 calibration: minmax, entropy or percentile.", rich_help_panel=ENGINES
    ),
]
EnginesDir = Annotated[
    Path | None,
    typer.Option(
        help="Use engines built by `segshield export` (manifest).", rich_help_panel=ENGINES
    ),
]

# Model options shared by audit, harden and the others.
AuditWeights = Annotated[
    Path | None,
    typer.Option(
        help="Weights (.safetensors or state dict), a TorchScript file, or a model card .json.",
        rich_help_panel=MODEL,
    ),
]
ModelKwargs = Annotated[
    str | None,
    typer.Option(
        help="Keyword arguments of the factory as JSON, e.g. '{\"out_channels\": 3}'.",
        rich_help_panel=MODEL,
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
Version = Annotated[
    bool,
    typer.Option(
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print the versions of segshield, torch and onnxruntime, then exit.",
    ),
]


def check_out(path: Path, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be one before any work is done."""
    from segshield.audits.settings import output_dir_problem

    problem = output_dir_problem(path)
    if problem is not None:
        raise SegShieldError(f"{flag}: {problem}")
