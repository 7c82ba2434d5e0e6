"""Stage 7 — audits: attack x loss x epsilon over engines, typed and versioned results.

The result types load eagerly (light: the gate and the renderers need only them); the runner
and its configuration, which import torch, load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from segshield.audits.results import (
    SCHEMA_VERSION,
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    EngineEval,
    EngineRecord,
)

_LAZY = {
    "ADVUNET_EPSILONS": "config",
    "DEFAULT_ATTACKS": "config",
    "DEFAULT_ENGINES": "config",
    "DEFAULT_EPSILONS": "config",
    "DEFAULT_LOSSES": "config",
    "ENGINES": "config",
    "AuditConfig": "config",
    "load_audit_data": "run",
    "run_audit": "run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"segshield.audits.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'segshield.audits' has no attribute {name!r}")


__all__ = [
    "ADVUNET_EPSILONS",
    "DEFAULT_ATTACKS",
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
    "EngineRecord",
    "load_audit_data",
    "run_audit",
]
