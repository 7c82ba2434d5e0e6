"""Audit settings from a file: `segshield.toml` (tables `[audit]`, `[policy]`, `[[rules]]`) or
`pyproject.toml` (the same under `[tool.segshield]`). Command-line options override them.

The schema is `AuditConfig` itself: every dataclass field is a setting of the same name, and
its type hint decides what a value may be (int, float, str, bool, Path, `X | None`, tuples of
str/int/float, enums, literals, tables), so a field added to AuditConfig is a setting the day it
exists. The model is set through `model`, `weights`, `trust_pickle` and `model_kwargs`
(`ModelSpec`'s fields). A field with `metadata={"setting": False}` is not a setting.
`trust_pickle` is one only on the command line: a settings file that sets it is refused
(it is picked up from the working folder, which may be the repository under audit).

Validation collects every problem — unknown keys, wrong types, out-of-range values, the
combinations AuditConfig refuses, an unusable output folder, the inline policy's rules —
and raises one SettingsError that lists them all.
"""

from __future__ import annotations

import difflib
import enum
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from segshield.epsilon import parse_epsilons
from segshield.errors import SegShieldError
from segshield.models import ModelSpec

from .config import AuditConfig

# Setting name -> ModelSpec field (the settings keep the CLI's option names).
MODEL_FIELDS = {
    "model": "factory",
    "weights": "weights",
    "trust_pickle": "allow_pickle",
    "model_kwargs": "factory_kwargs",
}
# Fields whose values need more than their type: epsilons accept "k/255" and presets.
_PARSERS: dict[str, Callable[[Any], Any]] = {"epsilons": parse_epsilons}
DEFAULT_OUT_DIR = Path("segshield-out")
# Ranges a type cannot express: setting -> (is it fine?, what it must be).
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "limit": (lambda v: v >= 1, "expected an int >= 1"),
    "alpha": (lambda v: v > 0, "expected a number > 0"),
    "asma_steps": (lambda v: v >= 1, "expected an int >= 1"),
    "seed": (lambda v: v >= 0, "expected an int >= 0"),
    "opset": (lambda v: v >= 7, "expected an ONNX opset >= 7"),
}
# Settings only the command line may set: a settings file is picked up from the working
# folder (a checked-out repository), so it must not be able to switch on unpickling.
FILE_FORBIDDEN_WHY = {
    "trust_pickle": "a settings file cannot allow unpickling (unpickling runs code from the "
    "checkpoint, and this file may come from the repository being audited); pass "
    "--trust-pickle on the command line instead",
}
FILE_FORBIDDEN = frozenset(FILE_FORBIDDEN_WHY)
# How a piece of an AuditConfig problem that continues the one before it begins.
_CONTINUATIONS = ("valid ", "choose ", "known ", "expected ", "got ")

Coercer = Callable[[Any], Any]


class SettingsError(SegShieldError):
    """A settings file or an option set is unreadable or has bad fields (all are listed)."""


@dataclass(frozen=True)
class Settings:
    """What a settings file holds: audit options (validated, in AuditConfig terms) and the raw
    policy tables (validated by the gate), plus where they came from."""

    origin: Path | None
    audit: dict[str, Any]
    policy: dict[str, Any] | None


def _optional_inner(hint: Any) -> Any | None:
    """`X` for `X | None` / `Optional[X]`, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def _scalar(hint: Any) -> Coercer | None:
    """A validator for one scalar type (ValueError says what was expected), or None."""

    def check(ok: Callable[[Any], bool], want: str, convert: Coercer = lambda v: v) -> Coercer:
        def coerce(value: Any) -> Any:
            if (isinstance(value, bool) and hint is not bool) or not ok(value):
                raise ValueError(f"expected {want}, got {value!r}")
            return convert(value)

        return coerce

    if hint is bool:
        return check(lambda v: isinstance(v, bool), "true or false")
    if hint is int:
        return check(lambda v: isinstance(v, int), "int")
    if hint is float:
        return check(lambda v: isinstance(v, (int, float)), "a number", float)
    if hint is str:
        return check(lambda v: isinstance(v, str), "str")
    if hint is Path:
        return check(lambda v: isinstance(v, (str, Path)), "a string (a path)", Path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [m.value for m in hint]
        return check(lambda v: v in values, f"one of {', '.join(map(str, values))}", hint)
    if typing.get_origin(hint) is typing.Literal:
        values = list(typing.get_args(hint))
        return check(lambda v: v in values, f"one of {', '.join(map(str, values))}")
    if hint is dict or typing.get_origin(hint) is dict:
        return check(lambda v: isinstance(v, dict), "a table")
    return None


def _items(value: Any) -> list[Any]:
    """A list, a tuple or a comma string -> a non-empty list; else ValueError."""
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("expected a non-empty list")
    return list(items)


def coercer(hint: Any) -> Coercer | None:
    """How a settings value of type `hint` is checked and converted, or None when the type is
    not one a settings file can express."""
    inner = _optional_inner(hint)
    if inner is not None:
        base = coercer(inner)
        return None if base is None else (lambda v: None if v is None else base(v))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item = _scalar(args[0]) if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            return None
        if args[0] is str:
            # Names may come as a comma string ("fgsm,pgd") or a list; "expected a list of names".
            def names(value: Any) -> tuple[str, ...]:
                items = _items(value)
                if not all(isinstance(v, str) for v in items):
                    raise ValueError("expected a list of names")
                return tuple(v.strip() for v in items)

            return names

        def numbers(value: Any) -> tuple[Any, ...]:
            items = _items(value)
            if isinstance(value, str):  # "1,8" from a comma string
                try:
                    items = [args[0](v) for v in items]
                except ValueError:
                    raise ValueError(f"expected a list of {args[0].__name__}s") from None
            return tuple(item(v) for v in items)

        return numbers
    return _scalar(hint)


def _setting_hints() -> dict[str, Any]:
    """Setting name -> type hint: AuditConfig's fields, the model's through MODEL_FIELDS."""
    hints = typing.get_type_hints(AuditConfig)
    model_hints = typing.get_type_hints(ModelSpec)
    out = {
        f.name: hints[f.name]
        for f in fields(AuditConfig)
        # The model is set through MODEL_FIELDS; metadata {"setting": False} opts a field out.
        if hints[f.name] is not ModelSpec and f.metadata.get("setting", True)
    }
    out.update({name: model_hints[attr] for name, attr in MODEL_FIELDS.items()})
    return out


SETTING_HINTS = _setting_hints()
# Fields of a type no settings file can express are left out (a test flags them).
SETTINGS: dict[str, Coercer] = {
    name: check
    for name, hint in SETTING_HINTS.items()
    if (check := _PARSERS.get(name) or coercer(hint)) is not None
}
AUDIT_KEYS = sorted(SETTINGS)
# Relative paths in a settings file are relative to the file's folder.
PATH_SETTINGS = tuple(
    name
    for name in SETTINGS
    if Path in (SETTING_HINTS[name], _optional_inner(SETTING_HINTS[name]))
    or SETTING_HINTS[name] == tuple[Path, ...]
)


def _check_ranges(name: str, value: Any) -> str | None:
    """What is wrong with a converted value that its type cannot say (None: fine). The
    combinations AuditConfig checks itself are collected from it (`_config_problems`)."""
    rule = _RANGES.get(name)
    if rule is None or value is None:
        return None
    ok, want = rule
    return None if ok(value) else f"{want}, got {value!r}"


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key.replace("-", "_"), AUDIT_KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting{hint} (known: {', '.join(AUDIT_KEYS)})"


def validate_settings(
    raw: Mapping[str, Any], problems: list[str], label: Callable[[str], str]
) -> dict[str, Any]:
    """Check and convert each `raw` value by its setting's type and range; bad ones are
    appended to `problems` (as "<label(key)>: <what is wrong>") and left out."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        check = SETTINGS.get(name)
        if check is None:
            problems.append(f"{label(key)}: {_unknown(key)}")
            continue
        try:
            converted = check(value)
        except (ValueError, TypeError) as exc:
            problems.append(f"{label(key)}: {exc}")
            continue
        wrong = _check_ranges(name, converted)
        if wrong is not None:
            problems.append(f"{label(key)}: {wrong}")
            continue
        out[name] = converted
    return out


def _raise(problems: list[str], where: str) -> None:
    if problems:
        raise SettingsError(f"invalid settings in {where}:\n  - " + "\n  - ".join(problems))


def _file_settings(raw: Any, problems: list[str], prefix: str = "") -> dict[str, Any]:
    """The audit options of a settings table `{audit: {...}, policy: {...}, rules: [...]}`;
    every bad one is appended to `problems` (labelled `<prefix>audit.<key>`)."""
    if not isinstance(raw, dict):
        problems.append(f"{prefix or 'the settings'} must be a table, got {type(raw).__name__}")
        return {}
    for key in sorted(set(raw) - {"audit", "policy", "rules"}):
        problems.append(f"{prefix}{key}: unknown table (known: audit, policy, rules)")
    audit_raw = raw.get("audit", {})
    if not isinstance(audit_raw, dict):
        problems.append(f"{prefix}audit must be a table")
        return {}
    forbidden = sorted(k for k in audit_raw if k.replace("-", "_") in FILE_FORBIDDEN)
    allowed = {k: v for k, v in audit_raw.items() if k not in forbidden}
    audit = validate_settings(allowed, problems, lambda key: f"{prefix}audit.{key}")
    for key in forbidden:
        problems.append(f"{prefix}audit.{key}: {FILE_FORBIDDEN_WHY[key.replace('-', '_')]}")
    return audit


def settings_from_dict(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """Validate `{audit: {...}, policy: {...}, rules: [...]}`; returns the audit options.
    Raises one SettingsError listing every bad field."""
    problems: list[str] = []
    audit = _file_settings(raw, problems)
    _raise(problems, origin)
    return audit


def _read_settings(path: Path | None, search_dir: Path | None, problems: list[str]) -> Settings:
    """The settings of `path` or of the file found in `search_dir` (see `load_settings`);
    bad fields go to `problems`. An unreadable file raises at once (nothing else to check)."""
    candidates: list[Path]
    if path is not None:
        candidates = [Path(path)]
        if not candidates[0].is_file():
            raise SettingsError(f"settings file {path} does not exist")
    else:
        base = Path.cwd() if search_dir is None else search_dir
        candidates = [base / "segshield.toml", base / "pyproject.toml"]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read settings {candidate}: {exc}") from exc
        prefix = ""
        if candidate.name == "pyproject.toml":
            tool = data.get("tool", {})
            data = tool.get("segshield") if isinstance(tool, dict) else None
            if data is None:
                if path is None:
                    continue  # a pyproject.toml without [tool.segshield] is not a settings file
                raise SettingsError(
                    f"{candidate} has no [tool.segshield] table (put the settings under "
                    "[tool.segshield.audit], or pass a segshield.toml)"
                )
            prefix = "tool.segshield."
        audit = _file_settings(data, problems, prefix)
        policy = None
        if isinstance(data, dict) and ("rules" in data or "policy" in data):
            policy = {k: data[k] for k in ("policy", "rules") if k in data}
        return Settings(candidate, audit, policy)
    return Settings(None, {}, None)


def load_settings(path: Path | None = None, search_dir: Path | None = None) -> Settings:
    """Read `path`, or look for segshield.toml, then pyproject.toml [tool.segshield], in
    `search_dir` (default: the current folder). No file found means empty settings. Raises one
    SettingsError listing every bad field."""
    problems: list[str] = []
    settings = _read_settings(path, search_dir, problems)
    _raise(problems, str(settings.origin))
    return settings


def output_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be an output folder (an existing file, a file on the way, a folder
    that cannot be written), or None. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a folder"
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"cannot create {path}: {probe} is a file"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"cannot write into {probe if probe != path else path}: {reason}"
    return None


def _config_problems(exc: ValueError) -> list[str]:
    """AuditConfig's problems (it joins them with "; ") one by one; a piece that continues
    the one before ("unknown engine 'x'; valid engines: ...") stays with it."""
    problems: list[str] = []
    for piece in (p.strip() for p in str(exc).split("; ")):
        if problems and piece.startswith(_CONTINUATIONS):
            problems[-1] += f"; {piece}"
        elif piece:
            problems.append(piece)
    return problems


def config_from_settings(
    settings: dict[str, Any], overrides: dict[str, Any], base_dir: Path | None = None
) -> AuditConfig:
    """AuditConfig from validated file settings overridden by validated explicit values.

    Relative paths in the file are relative to the file's folder (`base_dir`); overriding
    paths are taken as given. Raises ValueError when AuditConfig refuses the combination.
    """
    merged = {**settings, **overrides}
    for key in PATH_SETTINGS:
        value, base = merged.get(key), None if key in overrides else base_dir
        if isinstance(value, tuple):  # a list of paths (engine_files)
            merged[key] = tuple(_path(v, base) for v in value)
        elif value is not None:
            merged[key] = _path(value, base)
    model = ModelSpec(
        factory=merged.pop("model", None),
        weights=merged.pop("weights", None),
        allow_pickle=bool(merged.pop("trust_pickle", False)),
        factory_kwargs=dict(merged.pop("model_kwargs", None) or {}),
    )
    merged.setdefault("out_dir", DEFAULT_OUT_DIR)
    return AuditConfig(model=model, **merged)


PolicyCheck = Callable[[Mapping[str, Any], str], list[str]]


def resolve_audit_config(
    overrides: Mapping[str, Any],
    config_path: Path | None = None,
    search_dir: Path | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    check_policy: PolicyCheck | None = None,
) -> tuple[AuditConfig, Settings]:
    """The AuditConfig of a settings file (`config_path`, or one found in `search_dir`, see
    `load_settings`) overridden by `overrides`, the explicitly given options by setting name.

    Override values are validated like file values (so "fgsm,pgd", "4/255,8/255" or "default"
    are fine); `labels` names them in errors (e.g. {"epsilons": "--epsilons"}). The file's
    policy tables, when there are any and `check_policy` is given, are checked by it (the gate
    is a later stage: the caller passes its validator, which returns the problems). Returns the
    config and the settings (whose `policy` tables the caller may gate with). Raises one
    SettingsError listing every problem: the file's fields, the options, the combinations
    AuditConfig refuses, the output folder and the inline policy.
    """
    problems: list[str] = []
    settings = _read_settings(config_path, search_dir, problems)
    names = dict(labels or {})
    given = validate_settings(overrides, problems, lambda key: names.get(key, key))
    base = settings.origin.parent if settings.origin else None
    cfg: AuditConfig | None = None
    try:
        cfg = config_from_settings(settings.audit, given, base)
    except ValueError as exc:
        problems.extend(_config_problems(exc))
    except TypeError as exc:  # a value of the right type AuditConfig still cannot take
        problems.append(str(exc))
    if cfg is not None:
        wrong = output_dir_problem(cfg.out_dir)
        if wrong is not None:
            where = names.get("out_dir", "--out") if "out_dir" in given else "audit.out_dir"
            problems.append(f"{where}: {wrong}")
    if settings.policy is not None and check_policy is not None:
        problems.extend(check_policy(settings.policy, str(settings.origin)))
    if problems:
        sources = [str(settings.origin)] if settings.origin else []
        sources += ["the command-line options"] if overrides else []
        _raise(problems, " and ".join(sources) or "the defaults")
    assert cfg is not None
    return cfg, settings


def _path(value: Any, base_dir: Path | None) -> Path:
    p = Path(value)
    return base_dir / p if base_dir is not None and not p.is_absolute() else p
