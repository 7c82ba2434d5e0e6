"""Stage 7 — audits: attack x loss x epsilon over engines, typed and versioned results."""

from segshield.audits.config import (
    ADVUNET_EPSILONS,
    DEFAULT_ATTACKS,
    DEFAULT_ENGINES,
    DEFAULT_EPSILONS,
    DEFAULT_LOSSES,
    ENGINES,
    AuditConfig,
)
from segshield.audits.results import (
    SCHEMA_VERSION,
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    EngineEval,
    EngineRecord,
)
from segshield.audits.run import load_audit_data, run_audit

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
