"""Release-gate policies: which measured values a model must keep, read from a TOML file.

Format::

    [policy]
    name = "example"          # optional; defaults to the file's stem
    schema_version = 1        # optional; must be 1 when present
    engine_health = "degraded"  # optional: "ok" | "degraded" (default) | "off"; see below
    evaluation_warnings = "off"  # optional: "fail" | "off" (default); see below

    [[rules]]
    name = "PGD Dice at eps <= 4/255 stays >= 0.5 on every engine"   # optional; generated
    metric = "dice"           # required; see below
    attack = "pgd"            # optional: a name, a list of names, or "*" (default)
    loss = "*"                # optional: a name, a list of names, or "*" (default)
    engine = "*"              # optional: a name, a list of names, or "*" (default)
    epsilon_max = "4/255"     # optional: cells with epsilon <= this
    epsilon_min = 0.0         # optional: cells with epsilon >= this
    # epsilon = "2/255"       # optional: exactly this epsilon (not with epsilon_min/_max)
    # label = "core"        # optional: one class's / label's score (dice, iou, ..., hd95)
    min = 0.5                 # exactly one bound: min / max (inclusive), or one below

    [[rules]]                 # a bound on the change from a baseline report (--baseline)
    metric = "dice"
    attack = "pgd"
    max_drop = 0.02           # baseline - new <= 0.02 at every measurement selected
    # max_relative_drop = 0.05  # (baseline - new) / |baseline| <= 0.05
    # max_rise / max_relative_rise: the same for a metric where lower is better

Metrics (``METRICS``, generated from the result types by :mod:`segshield.results.catalogue`):
every number of an engine evaluation's ``Metrics`` (``accuracy``, ``loss``, ``dice``, ``iou``,
``mean_iou``, ``precision``, ``recall``, ``pixel_error_l2``, ...); its comparisons
(``attack_success``: relative drop of the task's primary metric on the same engine;
``disagreement``, ``dice_gap``, ``transfer_ratio``, ``fooled_source_only``/``_engine_only``
against the source engine on the same inputs; ``flip_rate``, ``success_rate``); bootstrap
confidence bounds over images ``<metric>_ci_low``/``_high`` (gate on a lower confidence bound:
``metric = "dice_ci_low"``, ``min = 0.7``); and the engine-independent perturbation metrics
(``ssim_mean``, ``ssim_min``, ``linf_max``, ``l2_mean``, ...). Values are fractions, not percent.

Selectors: names compare case-insensitively. ``attack = "*"`` selects every attack cell; the
clean evaluation is selected only by naming ``"clean"`` (alone or in a list), and counts as
epsilon 0 with no loss. For ``disagreement`` and ``dice_gap``, ``engine = "*"`` means every
engine except the source ("pytorch"), which they compare against. Epsilons are floats in pixel
units or ``"k/255"`` strings, compared with a tolerance of 1e-9.

Engine health: every engine of the report whose health was measured (its clean masks against
the source's on every audited image, :mod:`segshield.engines.health`) must be at least
``engine_health``: with the default "degraded" a failed engine fails the release, with "ok" a
degraded one does too; "off" gates on the rules alone. It is checked as one extra outcome.

Evaluation strength: ``attack = "worst_case"`` selects, per ε, the per-image worst case over
every attack and loss of the audit on each engine (metrics ``dice``, ``iou``,
``dice_per_image_mean``, ``attack_success``, ...; its ``loss`` selector is ignored);
``attack = "certified"`` selects randomized-smoothing certification (an audit with
``--certify``), ``epsilon`` being the L2 radius and the metric one of ``certified_dice``,
``certified_share``, ``certified_any_share``, ``abstain_share``. Neither is selected by
``attack = "*"``. With ``evaluation_warnings = "fail"`` any gradient-masking or
weak-evaluation warning of the audit fails the release (one extra outcome; an audit that ran
no checks cannot be verified).

Baseline rules (``segshield gate report.json --policy p.toml --baseline base/report.json``):
a rule takes exactly one bound, an absolute one (``min`` / ``max``) or one on the change from
the baseline; bound a metric both ways with two rules. Each measurement the selectors pick on
the new report (a cell or worst case or certified radius, on one engine) is compared with the
same measurement of the baseline, and the rule bounds the worsening: for a metric where higher
is better (``dice``, ``iou``, ``accuracy``, ``precision``, ``recall``, ``dice_gap``,
``certified_*``, their ``_ci_low``/``_high``) ``max_drop`` = baseline − new and
``max_relative_drop`` = (baseline − new) / |baseline|; for one where lower is better
(``attack_success``, ``disagreement``, ``loss``, ``pixel_error_*``, ``transfer_ratio``,
``fooled_*``, ``flip_rate``, ``success_rate``, ``abstain_share``, ``hd95``, ``asd``)
``max_rise`` = new − baseline and ``max_relative_rise``. The directions are
``LOWER_IS_BETTER`` / ``HIGHER_IS_BETTER`` in :mod:`segshield.gate.rules`; the wrong key for
a metric's direction is a policy error, and the perturbation metrics (no better direction)
take only min / max. Bounds are >= 0 and inclusive; an improvement always passes. A
measurement the baseline lacks (cell, engine or value) cannot be compared and fails the rule,
naming it; so does a relative change from a baseline of 0.
Without a baseline report such a rule fails ("needs --baseline"; the `gate` command refuses
the policy up front, and ``segshield audit`` cannot gate it: gate its report.json afterwards).
The outcome's worst value is the largest change, with where it was.

Every problem in a policy is reported at once in one `PolicyError`; rules are numbered from 1
in the order of the ``[[rules]]`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from segshield.epsilon import parse_epsilon
from segshield.errors import PolicyError
from segshield.gate.rules import (
    CI_METRICS,
    ENGINE_METRICS,
    EPSILON_TOLERANCE,
    EVAL_METRICS,
    METRICS,
    PERTURBATION_METRICS,
    SOURCE_RELATIVE_METRICS,
    Rule,
    parse_rule,
)

# Re-exported: the rule vocabulary has always been importable from here.
__all__ = [
    "CI_METRICS",
    "ENGINE_METRICS",
    "EPSILON_TOLERANCE",
    "EVAL_METRICS",
    "HEALTH_LEVELS",
    "METRICS",
    "PERTURBATION_METRICS",
    "POLICY_SCHEMA_VERSION",
    "SOURCE_RELATIVE_METRICS",
    "Policy",
    "Rule",
    "example_policy_path",
    "parse_epsilon",
    "policy_from_dict",
    "policy_from_toml",
]

POLICY_SCHEMA_VERSION = 1
_TOP_KEYS = ("policy", "rules")
_POLICY_KEYS = ("name", "schema_version", "engine_health", "evaluation_warnings")
HEALTH_LEVELS = ("ok", "degraded", "off")
DEFAULT_ENGINE_HEALTH = "degraded"
WARNING_LEVELS = ("fail", "off")
DEFAULT_EVALUATION_WARNINGS = "off"


@dataclass(frozen=True)
class Policy:
    """A named set of rules; a release passes when every rule passes."""

    name: str
    rules: tuple[Rule, ...]
    engine_health: str = DEFAULT_ENGINE_HEALTH  # the least health an engine needs (or "off")
    evaluation_warnings: str = DEFAULT_EVALUATION_WARNINGS  # "fail": a masking warning fails

    @property
    def needs_baseline(self) -> bool:
        """True when a rule bounds the change from a baseline report."""
        return any(rule.needs_baseline for rule in self.rules)


def policy_from_dict(raw: Any, origin: str = "<policy>", *, default_name: str = "policy") -> Policy:
    """Validate a parsed policy mapping; raises one PolicyError listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}: a policy must be a table, got {type(raw).__name__}")

    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        problems.append(
            f"unknown top-level key(s) {', '.join(repr(k) for k in unknown)}; "
            f"valid keys: {', '.join(_TOP_KEYS)}"
        )

    name = default_name
    header = raw.get("policy", {})
    if not isinstance(header, dict):
        problems.append("[policy] must be a table")
        header = {}
    bad = [k for k in header if k not in _POLICY_KEYS]
    if bad:
        problems.append(
            f"[policy]: unknown key(s) {', '.join(repr(k) for k in bad)}; "
            f"valid keys: {', '.join(_POLICY_KEYS)}"
        )
    if "schema_version" in header and (
        isinstance(header["schema_version"], bool)
        or header["schema_version"] != POLICY_SCHEMA_VERSION
    ):
        problems.append(
            f"[policy]: schema_version {header['schema_version']!r} is not supported "
            f"(this segshield reads {POLICY_SCHEMA_VERSION})"
        )
    if "name" in header:
        if isinstance(header["name"], str) and header["name"].strip():
            name = header["name"].strip()
        else:
            problems.append(f"[policy]: 'name' must be a non-empty string, got {header['name']!r}")

    engine_health = header.get("engine_health", DEFAULT_ENGINE_HEALTH)
    if engine_health not in HEALTH_LEVELS:
        problems.append(
            f"[policy]: engine_health must be one of {', '.join(HEALTH_LEVELS)}, "
            f"got {engine_health!r}"
        )
        engine_health = DEFAULT_ENGINE_HEALTH

    warnings = header.get("evaluation_warnings", DEFAULT_EVALUATION_WARNINGS)
    if warnings not in WARNING_LEVELS:
        problems.append(
            f"[policy]: evaluation_warnings must be one of {', '.join(WARNING_LEVELS)}, "
            f"got {warnings!r}"
        )
        warnings = DEFAULT_EVALUATION_WARNINGS

    rules: list[Rule] = []
    raw_rules = raw.get("rules")
    if raw_rules is None or (isinstance(raw_rules, list) and not raw_rules):
        problems.append("the policy has no rules; add at least one [[rules]] table")
    elif not isinstance(raw_rules, list):
        problems.append("'rules' must be an array of tables ([[rules]])")
    else:
        for index, raw_rule in enumerate(raw_rules, start=1):
            rule = parse_rule(raw_rule, index, problems)
            if rule is not None:
                rules.append(rule)

    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            problems.append(f"two rules are named {rule.name!r}; rule names must be unique")
        seen.add(rule.name)

    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise PolicyError(f"{origin}: invalid policy ({len(problems)} problem(s)):\n{listing}")
    return Policy(
        name=name, rules=tuple(rules), engine_health=engine_health, evaluation_warnings=warnings
    )


def policy_from_toml(path: str | Path) -> Policy:
    """Read and validate a policy TOML file; every error names the path."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(f"{path}: policy file not found") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy file is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file ({exc.strerror or exc})") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    return policy_from_dict(raw, origin=str(path), default_name=path.stem)


def example_policy_path() -> Path:
    """The example policy shipped with the package (same content as examples/policy.toml)."""
    return Path(__file__).parent / "resources" / "example_policy.toml"
