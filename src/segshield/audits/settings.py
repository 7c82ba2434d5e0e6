"""Audit settings from a file: `segshield.toml` (tables `[audit]`, `[policy]`, `[[rules]]`) or
`pyproject.toml` (the same under `[tool.segshield]`). Command-line options override them.

The schema is `AuditConfig` itself: every dataclass field is a setting of the same name, and
its type hint decides what a value may be (int, float, str, bool, Path, `X | None`, tuples of
str/int/float, enums, literals, tables), so a field added to AuditConfig is a setting the day it
exists. The model is set through `model`, `weights`, `trust_pickle` and `model_kwargs`
(`ModelSpec`'s fields). A field with `metadata={"setting": False}` is not a setting.

Validation collects every bad field and raises one SettingsError that lists them all.
"""

from __future__ import annotations

import enum
import sys
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
    name for name in SETTINGS if Path in (SETTING_HINTS[name], _optional_inner(SETTING_HINTS[name]))
)


def validate_settings(
    raw: Mapping[str, Any], problems: list[str], label: Callable[[str], str]
) -> dict[str, Any]:
    """Check and convert each `raw` value by its setting's type; bad ones are appended to
    `problems` (as "<label(key)>: <what is wrong>") and left out."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        check = SETTINGS.get(name)
        if check is None:
            problems.append(f"{label(key)}: unknown setting (known: {', '.join(AUDIT_KEYS)})")
            continue
        try:
            out[name] = check(value)
        except (ValueError, TypeError) as exc:
            problems.append(f"{label(key)}: {exc}")
    return out


def _raise(problems: list[str], where: str) -> None:
    if problems:
        raise SettingsError(f"invalid settings in {where}:\n  - " + "\n  - ".join(problems))


def settings_from_dict(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """Validate `{audit: {...}, policy: {...}, rules: [...]}`; returns the audit options."""
    problems: list[str] = []
    unknown = sorted(set(raw) - {"audit", "policy", "rules"})
    for key in unknown:
        problems.append(f"{key}: unknown table (known: audit, policy, rules)")
    audit_raw = raw.get("audit", {})
    audit: dict[str, Any] = {}
    if isinstance(audit_raw, dict):
        audit = validate_settings(audit_raw, problems, lambda key: f"audit.{key}")
    else:
        problems.append("audit must be a table")
    _raise(problems, origin)
    return audit


def load_settings(path: Path | None = None, search_dir: Path | None = None) -> Settings:
    """Read `path`, or look for segshield.toml, then pyproject.toml [tool.segshield], in
    `search_dir` (default: the current folder). No file found means empty settings."""
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
            data = tomllib.loads(candidate.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read settings {candidate}: {exc}") from exc
        if candidate.name == "pyproject.toml" and path is None:
            data = data.get("tool", {}).get("segshield")
            if data is None:
                continue
        elif candidate.name == "pyproject.toml":
            data = data.get("tool", {}).get("segshield", {})
        audit = settings_from_dict(data, str(candidate))
        policy = None
        if "rules" in data or "policy" in data:
            policy = {k: data[k] for k in ("policy", "rules") if k in data}
        return Settings(candidate, audit, policy)
    return Settings(None, {}, None)


def config_from_settings(
    settings: dict[str, Any], overrides: dict[str, Any], base_dir: Path | None = None
) -> AuditConfig:
    """AuditConfig from validated file settings overridden by validated explicit values.

    Relative paths in the file are relative to the file's folder (`base_dir`); overriding
    paths are taken as given. Raises ValueError when AuditConfig refuses the combination.
    """
    merged = {**settings, **overrides}
    for key in PATH_SETTINGS:
        if merged.get(key) is not None:
            merged[key] = _path(merged[key], None if key in overrides else base_dir)
    model = ModelSpec(
        factory=merged.pop("model", None),
        weights=merged.pop("weights", None),
        allow_pickle=bool(merged.pop("trust_pickle", False)),
        factory_kwargs=dict(merged.pop("model_kwargs", None) or {}),
    )
    merged.setdefault("out_dir", DEFAULT_OUT_DIR)
    return AuditConfig(model=model, **merged)


def resolve_audit_config(
    overrides: Mapping[str, Any],
    config_path: Path | None = None,
    search_dir: Path | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> tuple[AuditConfig, Settings]:
    """The AuditConfig of a settings file (`config_path`, or one found in `search_dir`, see
    `load_settings`) overridden by `overrides`, the explicitly given options by setting name.

    Override values are validated like file values (so "fgsm,pgd", "4/255,8/255" or "default"
    are fine); `labels` names them in errors (e.g. {"epsilons": "--epsilons"}). Returns the
    config and the settings (whose `policy` tables the caller may gate with). Raises one
    SettingsError listing every bad value.
    """
    settings = load_settings(config_path, search_dir)
    names = dict(labels or {})
    problems: list[str] = []
    given = validate_settings(overrides, problems, lambda key: names.get(key, key))
    _raise(problems, "the options")
    base = settings.origin.parent if settings.origin else None
    try:
        cfg = config_from_settings(settings.audit, given, base)
    except ValueError as exc:
        raise SettingsError(f"invalid audit settings: {exc}") from exc
    return cfg, settings


def _path(value: Any, base_dir: Path | None) -> Path:
    p = Path(value)
    return base_dir / p if base_dir is not None and not p.is_absolute() else p
