"""`segshield audit`'s options as one frozen AuditConfig and its policy: the explicitly given
options override the settings file, whose inline policy is checked with everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from segshield.cli.options import explicit, flag_of, json_object

_NOT_SETTINGS = ("policy", "config", "verbose", "strict")
_SETTING_NAMES = {"out": "out_dir", "engine_file": "engine_files"}


def audit_config_and_policy(
    ctx: typer.Context, config: Path | None, policy: Path | None
) -> tuple[Any, Any]:
    """(AuditConfig, Policy or None) of an `audit` command line; a policy with baseline rules
    is refused before anything runs (the audit's gate has no baseline)."""
    from segshield.audits.settings import resolve_audit_config
    from segshield.gate import policy_from_dict, policy_from_toml
    from segshield.gate.verify import require_baseline

    overrides, labels = _audit_overrides(ctx)
    check = None if policy is not None else _policy_problems
    cfg, settings = resolve_audit_config(overrides, config, labels=labels, check_policy=check)
    if policy is not None:
        pol = policy_from_toml(policy)
    elif settings.policy is not None:
        pol = policy_from_dict(settings.policy, origin=str(settings.origin))
    else:
        pol = None
    if pol is not None:
        how = "a baseline, which audit cannot take (gate report.json: segshield gate)"
        require_baseline(pol, False, how=how)
    return cfg, pol


def _policy_problems(raw: Any, origin: str) -> list[str]:
    """The problems of a settings file's inline policy, one per line (for the one settings
    error that lists everything)."""
    from segshield.errors import PolicyError
    from segshield.gate import policy_from_dict

    try:
        policy_from_dict(raw, origin=origin)
    except PolicyError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        listed = [line.removeprefix("- ") for line in lines[1:] if line.startswith("- ")]
        return [p if p.startswith("[") else f"policy {p}" for p in listed] or lines
    return []


def _audit_overrides(ctx: typer.Context) -> tuple[dict[str, Any], dict[str, str]]:
    """The explicitly given `audit` options by setting name (the file fills in the rest), and
    the option flag of every setting, for error messages."""
    overrides: dict[str, Any] = {}
    for name in explicit(ctx) - set(_NOT_SETTINGS):
        value = ctx.params[name]
        if name == "model_kwargs":
            value = json_object(value, flag_of(ctx, name))
        elif name == "label_groups":
            value = [g.strip() for g in str(value).split(";") if g.strip()]
        overrides[_SETTING_NAMES.get(name, name)] = value
    labels = {_SETTING_NAMES.get(n, n): flag_of(ctx, n) for n in ctx.params}
    return overrides, labels
