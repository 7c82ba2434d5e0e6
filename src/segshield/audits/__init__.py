"""Stage 7 — audits: the one audit loop (attack x loss x epsilon over engines) for every task.

The result types load eagerly (light, from segshield.results: the gate and the renderers need
only them); the runner and its configuration, which import torch, load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from segshield.results import (
    SCHEMA_VERSION,
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    EngineEval,
)

_LAZY = {
    "ADVUNET_EPSILONS": "config",
    "DEFAULT_ATTACKS": "config",
    "DEFAULT_ENGINES": "config",
    "DEFAULT_EPSILONS": "config",
    "DEFAULT_LOSSES": "config",
    "ENGINES": "config",
    "AuditConfig": "config",
    "load_audit_data": "inputs",
    "run_audit": "run",
    "DEFAULT_COMPARISONS": "compare",
    "attack_budget": "plan",
    "build_targets": "plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"segshield.audits.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'segshield.audits' has no attribute {name!r}")


__all__ = [
    "ADVUNET_EPSILONS",
    "DEFAULT_ATTACKS",
    "DEFAULT_COMPARISONS",
    "DEFAULT_ENGINES",
    "DEFAULT_EPSILONS",
    "DEFAULT_LOSSES",
    "ENGINES",
    "SCHEMA_VERSION",
    "SOURCE_ENGINE",
    "AuditCell",
    "AuditConfig",
    "AuditReport",
    "EngineEval",
    "attack_budget",
    "build_targets",
    "load_audit_data",
    "run_audit",
]
