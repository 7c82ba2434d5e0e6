"""Release gating: a TOML policy of bounds on audit measurements, and its verdict on a report."""

from __future__ import annotations

from segshield.gate.evaluate import GateResult, RuleOutcome, evaluate
from segshield.gate.policy import (
    METRICS,
    Policy,
    Rule,
    example_policy_path,
    parse_epsilon,
    policy_from_dict,
    policy_from_toml,
)

__all__ = [
    "METRICS",
    "GateResult",
    "Policy",
    "Rule",
    "RuleOutcome",
    "evaluate",
    "example_policy_path",
    "parse_epsilon",
    "policy_from_dict",
    "policy_from_toml",
]
