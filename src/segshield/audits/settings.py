"""Audit settings from a file: `segshield.toml` (tables `[audit]`, `[policy]`, `[[rules]]`) or
`pyproject.toml` (the same under `[tool.segshield]`). Command-line options override them.

Validation collects every bad field and raises one ValueError that lists them all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from segshield.errors import SegShieldError

from .config import AuditConfig

LIST_FIELDS = ("attacks", "losses", "engines", "epsilons")
PATH_FIELDS = ("out_dir", "data", "engines_dir", "calibration_data")
MODEL_FIELDS = {
    "model": "factory",
    "weights": "weights",
    "trust_pickle": "allow_pickle",
    "model_kwargs": "factory_kwargs",
}
_SCALARS: dict[str, type | tuple[type, ...]] = {
    "dataset": str,
    "split": str,
    "size": int,
    "num_classes": int,
    "limit": int,
    "steps": int,
    "alpha": (int, float),
    "batch_size": int,
    "seed": int,
    "threshold": (int, float),
    "parity_atol": (int, float),
    "opset": int,
    "n_boot": int,
    "panels": int,
    "target": str,
    "calibration_method": str,
    "fooled_threshold": (int, float),
    "asma_steps": int,
    "asma_tau": (int, float),
    "asma_beta": (int, float),
}
BOOL_FIELDS = ("trust_pickle", "bench")
AUDIT_KEYS = sorted({*LIST_FIELDS, *PATH_FIELDS, *MODEL_FIELDS, *_SCALARS, *BOOL_FIELDS})


class SettingsError(SegShieldError):
    """A settings file is unreadable or has bad fields (all of them are listed)."""


@dataclass(frozen=True)
class Settings:
    """What a settings file holds: audit options (validated, in AuditConfig terms) and the raw
    policy tables (validated by the gate), plus where they came from."""

    origin: Path | None
    audit: dict[str, Any]
    policy: dict[str, Any] | None


def _epsilon(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        return float(num) / float(den)
    return float(value)


def _validate_audit(raw: Any, where: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a table")
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in AUDIT_KEYS:
            problems.append(f"{where}.{key}: unknown setting (known: {', '.join(AUDIT_KEYS)})")
        elif name in LIST_FIELDS:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not items:
                problems.append(f"{where}.{key}: expected a non-empty list")
                continue
            if name == "epsilons":
                try:
                    out[name] = tuple(_epsilon(v) for v in items)
                except (ValueError, ZeroDivisionError):
                    problems.append(f"{where}.{key}: epsilons must be numbers or 'k/255'")
            elif not all(isinstance(v, str) for v in items):
                problems.append(f"{where}.{key}: expected a list of names")
            else:
                out[name] = tuple(v.strip() for v in items)
        elif name == "model_kwargs":
            if not isinstance(value, dict):
                problems.append(f"{where}.{key}: expected a table of factory arguments")
            else:
                out[name] = value
        elif name in PATH_FIELDS or (name in MODEL_FIELDS and name != "trust_pickle"):
            if not isinstance(value, str):
                problems.append(f"{where}.{key}: expected a string")
            else:
                out[name] = value
        elif name in BOOL_FIELDS:
            if not isinstance(value, bool):
                problems.append(f"{where}.{key}: expected true or false")
            else:
                out[name] = value
        else:
            want = _SCALARS[name]
            if isinstance(value, bool) or not isinstance(value, want):
                kind = want.__name__ if isinstance(want, type) else "a number"
                problems.append(f"{where}.{key}: expected {kind}, got {value!r}")
            else:
                out[name] = value
    return out


def settings_from_dict(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """Validate `{audit: {...}, policy: {...}, rules: [...]}`; returns the audit options."""
    problems: list[str] = []
    unknown = sorted(set(raw) - {"audit", "policy", "rules"})
    for key in unknown:
        problems.append(f"{key}: unknown table (known: audit, policy, rules)")
    audit = _validate_audit(raw.get("audit", {}), "audit", problems)
    if problems:
        raise SettingsError(f"invalid settings in {origin}:\n  - " + "\n  - ".join(problems))
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
    """AuditConfig from file settings overridden by explicit command-line values.

    Relative paths in the file are relative to the file's folder (`base_dir`).
    """
    from segshield.models import ModelSpec

    merged = {**settings, **overrides}
    model = ModelSpec(
        factory=merged.pop("model", None),
        weights=_path(merged.pop("weights", None), base_dir, "weights" in overrides),
        allow_pickle=bool(merged.pop("trust_pickle", False)),
        factory_kwargs=dict(merged.pop("model_kwargs", None) or {}),
    )
    for key in PATH_FIELDS:
        if key in merged and merged[key] is not None:
            merged[key] = _path(merged[key], base_dir, key in overrides)
    names = {f.name for f in fields(AuditConfig)}
    kwargs = {k: v for k, v in merged.items() if k in names}
    if "out_dir" not in kwargs:
        kwargs["out_dir"] = Path("segshield-out")
    return AuditConfig(model=model, **kwargs)


def _path(value: Any, base_dir: Path | None, from_cli: bool) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if not from_cli and base_dir is not None and not p.is_absolute():
        p = base_dir / p
    return p
