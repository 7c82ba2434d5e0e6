"""Release-gate policies: which measured values a model must keep, read from a TOML file.

Format::

    [policy]
    name = "example"          # optional; defaults to the file's stem
    schema_version = 1        # optional; must be 1 when present

    [[rules]]
    name = "PGD Dice at eps <= 4/255 stays >= 0.5 on every engine"   # optional; generated
    metric = "dice"           # required; see below
    attack = "pgd"            # optional: a name, a list of names, or "*" (default)
    loss = "*"                # optional: a name, a list of names, or "*" (default)
    engine = "*"              # optional: a name, a list of names, or "*" (default)
    epsilon_max = "4/255"     # optional: cells with epsilon <= this
    epsilon_min = 0.0         # optional: cells with epsilon >= this
    # epsilon = "2/255"       # optional: exactly this epsilon (not with epsilon_min/_max)
    min = 0.5                 # exactly one of min / max; the bound is inclusive

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

Every problem in a policy is reported at once in one `PolicyError`; rules are numbered from 1
in the order of the ``[[rules]]`` tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from segshield.epsilon import format_epsilon, parse_epsilon
from segshield.errors import PolicyError
from segshield.results import CLEAN, COMPARISONS, SOURCE_ENGINE
from segshield.results.catalogue import (
    CI_BOUNDS,
    GATE_METRICS,
    METRIC_FIELDS,
    PERTURBATION_METRICS,
)

POLICY_SCHEMA_VERSION = 1
EPSILON_TOLERANCE = 1e-9

# The catalogue is generated from the result types (segshield.results.catalogue): a metric
# added to Metrics, a comparison or a perturbation field is gateable without editing the gate.
ENGINE_METRICS = METRIC_FIELDS
EVAL_METRICS = COMPARISONS
# Bootstrap confidence bounds over images (EngineEval.ci): gate on "Dice's lower bound >= x".
CI_METRICS = CI_BOUNDS
METRICS = GATE_METRICS
# Metrics defined against the source engine: meaningless on the source itself.
SOURCE_RELATIVE_METRICS = (
    "disagreement",
    "dice_gap",
    "transfer_ratio",
    "fooled_source_only",
    "fooled_engine_only",
)

_TOP_KEYS = ("policy", "rules")
_POLICY_KEYS = ("name", "schema_version")
_RULE_KEYS = (
    "name",
    "metric",
    "attack",
    "loss",
    "engine",
    "epsilon",
    "epsilon_min",
    "epsilon_max",
    "min",
    "max",
)


@dataclass(frozen=True)
class Rule:
    """One bound on one metric over the audit measurements its selectors pick.

    ``attacks``/``losses``/``engines`` are lower-cased names, or None for "*".
    """

    name: str
    metric: str
    bound: str  # "min" | "max"
    threshold: float
    attacks: tuple[str, ...] | None = None
    losses: tuple[str, ...] | None = None
    engines: tuple[str, ...] | None = None
    epsilon: float | None = None
    epsilon_min: float | None = None
    epsilon_max: float | None = None

    @property
    def per_engine(self) -> bool:
        """False for perturbation metrics, which are one value per cell."""
        return self.metric not in PERTURBATION_METRICS

    @property
    def selects_clean(self) -> bool:
        return self.attacks is not None and CLEAN in self.attacks

    def matches_attack(self, attack: str) -> bool:
        return self.attacks is None or attack.lower() in self.attacks

    def matches_loss(self, loss: str) -> bool:
        return self.losses is None or loss.lower() in self.losses

    def matches_epsilon(self, epsilon: float) -> bool:
        tol = EPSILON_TOLERANCE
        if self.epsilon is not None and abs(epsilon - self.epsilon) > tol:
            return False
        if self.epsilon_min is not None and epsilon < self.epsilon_min - tol:
            return False
        return not (self.epsilon_max is not None and epsilon > self.epsilon_max + tol)

    def matches_engine(self, engine: str) -> bool:
        if self.engines is None:
            return not (self.metric in SOURCE_RELATIVE_METRICS and engine == SOURCE_ENGINE)
        return engine.lower() in self.engines

    def satisfied_by(self, value: float) -> bool:
        """Inclusive bound: a value equal to the threshold passes."""
        return value >= self.threshold if self.bound == "min" else value <= self.threshold


@dataclass(frozen=True)
class Policy:
    """A named set of rules; a release passes when every rule passes."""

    name: str
    rules: tuple[Rule, ...]


def _selector(value: Any, key: str) -> tuple[str, ...] | None:
    """Map '*' to None and a name or list of names to a lower-cased tuple; else ValueError."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError(f"'{key}' must be a name, a non-empty list of names, or '*'")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"'{key}' must hold non-empty strings, got {value!r}")
    cleaned = tuple(n.strip().lower() for n in names)
    if "*" in cleaned:
        if len(cleaned) > 1:
            raise ValueError(f"'{key}' cannot combine '*' with names")
        return None
    return cleaned


def _describe(
    metric: str,
    bound: str,
    threshold: float,
    selectors: dict[str, tuple[str, ...] | None],
    eps: dict[str, float | None],
) -> str:
    """A generated rule name such as ``dice >= 0.5 [attack=pgd, eps<=4/255]``."""
    parts = [f"{k}={','.join(v)}" for k, v in selectors.items() if v is not None]
    for key, op in (("epsilon", "="), ("epsilon_min", ">="), ("epsilon_max", "<=")):
        if eps[key] is not None:
            parts.append(f"eps{op}{format_epsilon(eps[key])}")
    text = f"{metric} {'>=' if bound == 'min' else '<='} {threshold:g}"
    return f"{text} [{', '.join(parts)}]" if parts else text


def _parse_rule(raw: Any, index: int, problems: list[str]) -> Rule | None:
    """One [[rules]] table -> Rule, appending every problem found to `problems`."""
    label = f"rule {index}"
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a table ([[rules]]), got {type(raw).__name__}")
        return None
    if isinstance(raw.get("name"), str) and raw["name"].strip():
        label = f"rule {index} ({raw['name']!r})"
    start = len(problems)

    unknown = [k for k in raw if k not in _RULE_KEYS]
    if unknown:
        problems.append(
            f"{label}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"valid keys: {', '.join(_RULE_KEYS)}"
        )
    name = raw.get("name")
    if name is not None and not (isinstance(name, str) and name.strip()):
        problems.append(f"{label}: 'name' must be a non-empty string, got {name!r}")

    metric = raw.get("metric")
    if metric is None:
        problems.append(f"{label}: 'metric' is required; valid metrics: {', '.join(METRICS)}")
    elif not isinstance(metric, str) or metric.strip().lower() not in METRICS:
        problems.append(f"{label}: unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
        metric = None
    else:
        metric = metric.strip().lower()

    bound: str | None = None
    threshold: float | None = None
    given = [b for b in ("min", "max") if b in raw]
    if len(given) == 2:
        problems.append(f"{label}: give exactly one of 'min' or 'max', not both")
    elif not given:
        problems.append(f"{label}: one of 'min' or 'max' is required")
    else:
        bound = given[0]
        value = raw[bound]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            problems.append(f"{label}: '{bound}' must be a finite number, got {value!r}")
        else:
            threshold = float(value)

    selectors: dict[str, tuple[str, ...] | None] = {}
    for key in ("attack", "loss", "engine"):
        try:
            selectors[key] = _selector(raw.get(key, "*"), key)
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            selectors[key] = None

    eps: dict[str, float | None] = {}
    for key in ("epsilon", "epsilon_min", "epsilon_max"):
        eps[key] = None
        if key in raw:
            try:
                eps[key] = parse_epsilon(raw[key])
            except ValueError as exc:
                problems.append(f"{label}: '{key}': {exc}")
    if "epsilon" in raw and ("epsilon_min" in raw or "epsilon_max" in raw):
        problems.append(f"{label}: 'epsilon' (exact) cannot be combined with epsilon_min/_max")
    lo, hi = eps["epsilon_min"], eps["epsilon_max"]
    if lo is not None and hi is not None and lo > hi + EPSILON_TOLERANCE:
        problems.append(f"{label}: epsilon_min {raw['epsilon_min']!r} > epsilon_max {hi!r}")

    # Selector/metric combinations that can never be measured are typos, not empty matches.
    attacks, engines = selectors["attack"], selectors["engine"]
    only_clean = attacks == (CLEAN,)
    if metric in PERTURBATION_METRICS:
        if engines is not None:
            problems.append(
                f"{label}: metric {metric!r} is engine-independent; drop 'engine' or use '*'"
            )
        if attacks is not None and CLEAN in attacks:
            problems.append(f"{label}: the clean evaluation has no perturbation ({metric!r})")
    if metric is not None and metric.startswith("attack_success") and only_clean:
        problems.append(f"{label}: the clean evaluation has no 'attack_success'")
    if metric in SOURCE_RELATIVE_METRICS and engines is not None and SOURCE_ENGINE in engines:
        problems.append(
            f"{label}: {metric!r} compares an engine with the source {SOURCE_ENGINE!r}; "
            "it is not defined on the source itself"
        )
    if only_clean and (selectors["loss"] is not None or any(v is not None for v in eps.values())):
        problems.append(f"{label}: 'loss' and epsilon selectors do not apply to attack='clean'")

    if len(problems) > start or metric is None or bound is None or threshold is None:
        return None
    name_text = _describe(metric, bound, threshold, selectors, eps)
    return Rule(
        name=name.strip() if isinstance(name, str) else name_text,
        metric=metric,
        bound=bound,
        threshold=threshold,
        attacks=attacks,
        losses=selectors["loss"],
        engines=engines,
        epsilon=eps["epsilon"],
        epsilon_min=lo,
        epsilon_max=hi,
    )


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

    rules: list[Rule] = []
    raw_rules = raw.get("rules")
    if raw_rules is None or (isinstance(raw_rules, list) and not raw_rules):
        problems.append("the policy has no rules; add at least one [[rules]] table")
    elif not isinstance(raw_rules, list):
        problems.append("'rules' must be an array of tables ([[rules]])")
    else:
        for index, raw_rule in enumerate(raw_rules, start=1):
            rule = _parse_rule(raw_rule, index, problems)
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
    return Policy(name=name, rules=tuple(rules))


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
