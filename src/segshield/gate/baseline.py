"""Rules against a baseline report: each measurement a rule selects on the new report is
matched to the same measurement (same cell or worst case or radius, same engine) of the
baseline, and the rule bounds the change (``max_drop``/``max_relative_drop`` for a metric where
higher is better, ``max_rise``/``max_relative_rise`` where lower is; :mod:`segshield.gate.rules`
holds each metric's direction).

A measurement whose baseline counterpart is missing, failed or unmeasured cannot be compared
and fails the rule, naming it: a baseline that ran less never lets a release pass unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segshield.gate.rules import RISE_BOUNDS, Rule

__all__ = ["BASELINE_MISSING", "Measurements", "changes_from_baseline"]

# Changes are rounded to this many decimals: the float noise of a subtraction (0.28 - 0.25 =
# 0.030000000000000027) never decides an inclusive bound or which change is the worst.
_DIGITS = 12

BASELINE_MISSING = (
    "needs --baseline: it bounds the change from a baseline report, and none was given"
)


@dataclass
class Measurements:
    """What one rule read on one report: (where, value) pairs, (where, why) pairs that could
    not be read, and why nothing matched at all (or None)."""

    measured: list[tuple[str, float]] = field(default_factory=list)
    unverifiable: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None


def changes_from_baseline(
    rule: Rule, new: Measurements, base: Measurements
) -> tuple[list[tuple[str, float]], list[tuple[str, str]], dict[str, dict[str, float]]]:
    """(changes, unverifiable, details) of the rule's measurements on the new report against
    the baseline's: one change per matched measurement (worse is larger: baseline − new for a
    drop, new − baseline for a rise; relative ones divided by |baseline|), one reason per
    measurement the baseline lacks, and ``{where: {"baseline", "new"}}`` for every change."""
    base_values = dict(base.measured)
    base_missing = dict(base.unverifiable)
    rise = rule.bound in RISE_BOUNDS
    changes: list[tuple[str, float]] = []
    unverifiable: list[tuple[str, str]] = []
    details: dict[str, dict[str, float]] = {}
    for where, value in new.measured:
        if where not in base_values:
            why = base_missing.get(where)
            unverifiable.append((where, f"baseline: {why}" if why else f"baseline has no {where}"))
            continue
        reference = base_values[where]
        change = value - reference if rise else reference - value
        if rule.relative:
            if reference == 0 and change > 0:
                unverifiable.append(
                    (where, f"relative change undefined at {where}: baseline {rule.metric} is 0")
                )
                continue
            change = change / abs(reference) if reference else 0.0
        changes.append((where, round(change, _DIGITS)))
        details[where] = {"baseline": reference, "new": value}
    return changes, unverifiable, details
