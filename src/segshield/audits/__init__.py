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
    "ClassifierAuditConfig": "classify",
    "ClassifierAuditReport": "classify",
    "ClassifierCell": "classify",
    "run_classifier_audit": "classify",
    "model_info_from_loaded": "classify",
    "SEED_CLASSIFIER_EPSILONS": "classify",
    "DEFAULT_CLASSIFIER_ATTACKS": "classify",
    "CLASSIFIER_REPORT_KIND": "classify",
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
    "CLASSIFIER_REPORT_KIND",
    "DEFAULT_ATTACKS",
    "DEFAULT_CLASSIFIER_ATTACKS",
    "DEFAULT_ENGINES",
    "DEFAULT_EPSILONS",
    "DEFAULT_LOSSES",
    "ENGINES",
    "SCHEMA_VERSION",
    "SEED_CLASSIFIER_EPSILONS",
    "SOURCE_ENGINE",
    "AuditCell",
    "AuditConfig",
    "AuditReport",
    "ClassifierAuditConfig",
    "ClassifierAuditReport",
    "ClassifierCell",
    "EngineEval",
    "EngineRecord",
    "load_audit_data",
    "model_info_from_loaded",
    "run_audit",
    "run_classifier_audit",
]
