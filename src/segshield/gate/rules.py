"""One gate rule: its selectors and bound (`Rule`), and the validation of a ``[[rules]]`` table.

The policy file format, the metrics and the selector semantics are described in
:mod:`segshield.gate.policy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from segshield.epsilon import format_epsilon, parse_epsilon
from segshield.results import CERTIFIED, CERTIFIED_METRICS, CLEAN, COMPARISONS, SOURCE_ENGINE
from segshield.results.catalogue import (
    CI_BOUNDS,
    GATE_METRICS,
    METRIC_FIELDS,
    PERTURBATION_METRICS,
)

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

# Which way a metric gets better, for the bounds against a baseline report (drop / rise).
# A metric in neither table takes only min / max: the perturbation's size and visibility (a
# property of the attack, not of the model), and a new metric until it is added here.
LOWER_IS_BETTER: tuple[str, ...] = (
    "loss",
    "pixel_error_l2",
    "pixel_error_rms",
    "hd95",
    "asd",
    "attack_success",
    "disagreement",
    "transfer_ratio",
    "fooled_source_only",
    "fooled_engine_only",
    "flip_rate",
    "success_rate",
    "abstain_share",
)
HIGHER_IS_BETTER: tuple[str, ...] = (
    "accuracy",
    "dice",
    "iou",
    "mean_iou",
    "precision",
    "recall",
    "dice_per_image_mean",
    "dice_per_volume_mean",
    "dice_gap",
    "certified_dice",
    "certified_share",
    "certified_any_share",
)


def metric_direction(metric: str) -> str | None:
    """ "higher" or "lower" (is better), or None for a metric without one; a confidence
    bound ``<m>_ci_low``/``_high`` goes the way of ``<m>``."""
    base = metric.removesuffix("_ci_low").removesuffix("_ci_high")
    if base in LOWER_IS_BETTER:
        return "lower"
    return "higher" if base in HIGHER_IS_BETTER else None


# Absolute bounds, then the bounds on the change from a baseline report by direction.
ABSOLUTE_BOUNDS = ("min", "max")
DROP_BOUNDS = ("max_drop", "max_relative_drop")  # higher-is-better metrics
RISE_BOUNDS = ("max_rise", "max_relative_rise")  # lower-is-better metrics
BOUNDS = (*ABSOLUTE_BOUNDS, *DROP_BOUNDS, *RISE_BOUNDS)

_RULE_KEYS = (
    "name",
    "metric",
    "attack",
    "loss",
    "engine",
    "epsilon",
    "epsilon_min",
    "epsilon_max",
    "label",
    *BOUNDS,
)
# The per-class scores a rule can select with ``label`` (a class or label name, or index).
LABEL_METRICS = ("dice", "iou", "precision", "recall", "hd95", "asd")


@dataclass(frozen=True)
class Rule:
    """One bound on one metric over the audit measurements its selectors pick: on each value
    (min / max), or on its change from the same measurement of a baseline report (the
    ``DROP_BOUNDS`` / ``RISE_BOUNDS``, relative ones as a fraction of |baseline|).

    ``attacks``/``losses``/``engines`` are lower-cased names, or None for "*".
    """

    name: str
    metric: str
    bound: str  # one of BOUNDS
    threshold: float
    attacks: tuple[str, ...] | None = None
    losses: tuple[str, ...] | None = None
    engines: tuple[str, ...] | None = None
    epsilon: float | None = None
    epsilon_min: float | None = None
    epsilon_max: float | None = None
    label: str | None = None  # one class's score (multi-class / multi-label), by name or index

    @property
    def per_engine(self) -> bool:
        """False for perturbation metrics, which are one value per cell."""
        return self.metric not in PERTURBATION_METRICS

    @property
    def needs_baseline(self) -> bool:
        """True for a bound on the change from a baseline report."""
        return self.bound not in ABSOLUTE_BOUNDS

    @property
    def relative(self) -> bool:
        return self.bound in ("max_relative_drop", "max_relative_rise")

    @property
    def selects_clean(self) -> bool:
        return self.attacks is not None and CLEAN in self.attacks

    @property
    def selects_certified(self) -> bool:
        return self.attacks == (CERTIFIED,)

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
        """Inclusive bound: a value equal to the threshold passes (for a baseline bound the
        value is the change, a drop or a rise: worse is larger)."""
        return value >= self.threshold if self.bound == "min" else value <= self.threshold


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
    """A generated rule name such as ``dice >= 0.5 [attack=pgd, eps<=4/255]`` or
    ``dice relative drop <= 0.05 vs baseline [engine=onnxruntime]``."""
    parts = [f"{k}={','.join(v)}" for k, v in selectors.items() if v is not None]
    for key, op in (("epsilon", "="), ("epsilon_min", ">="), ("epsilon_max", "<=")):
        if eps[key] is not None:
            parts.append(f"eps{op}{format_epsilon(eps[key])}")
    if bound in ABSOLUTE_BOUNDS:
        text = f"{metric} {'>=' if bound == 'min' else '<='} {threshold:g}"
    else:
        change = bound.removeprefix("max_").replace("_", " ")
        text = f"{metric} {change} <= {threshold:g} vs baseline"
    return f"{text} [{', '.join(parts)}]" if parts else text


def _check_rule_keys(raw: dict[str, Any], label: str, problems: list[str]) -> None:
    """Unknown keys and a malformed optional 'name'."""
    unknown = [k for k in raw if k not in _RULE_KEYS]
    if unknown:
        problems.append(
            f"{label}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"valid keys: {', '.join(_RULE_KEYS)}"
        )
    name = raw.get("name")
    if name is not None and not (isinstance(name, str) and name.strip()):
        problems.append(f"{label}: 'name' must be a non-empty string, got {name!r}")


def _parse_metric(raw: dict[str, Any], label: str, problems: list[str]) -> str | None:
    """The required 'metric', lower-cased; None (with a problem) when missing or unknown."""
    metric = raw.get("metric")
    if metric is None:
        problems.append(f"{label}: 'metric' is required; valid metrics: {', '.join(METRICS)}")
        return None
    if not isinstance(metric, str) or metric.strip().lower() not in METRICS:
        problems.append(f"{label}: unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
        return None
    return metric.strip().lower()


def _parse_bound(
    raw: dict[str, Any], metric: str | None, label: str, problems: list[str]
) -> tuple[str | None, float | None]:
    """Exactly one of ``BOUNDS`` with a finite number (a baseline bound >= 0, and its direction
    the metric's): (bound, threshold), None where bad."""
    given = [b for b in BOUNDS if b in raw]
    if len(given) != 1:
        listed = " or ".join(repr(b) for b in (given or ABSOLUTE_BOUNDS))
        others = ", ".join(b for b in BOUNDS if b not in given and b not in ABSOLUTE_BOUNDS)
        problems.append(
            f"{label}: give exactly one of {listed}, not {len(given)}"
            if given
            else f"{label}: one of {listed} is required (or, against a baseline, one of {others})"
        )
        return None, None
    bound = given[0]
    value = raw[bound]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"{label}: '{bound}' must be a finite number, got {value!r}")
        return bound, None
    if bound in ABSOLUTE_BOUNDS or metric is None:
        return bound, float(value)
    if value < 0:
        problems.append(f"{label}: '{bound}' is the largest change allowed, >= 0; got {value!r}")
    direction = metric_direction(metric)
    if direction is None:
        problems.append(f"{label}: {metric!r} has no better direction: bound it with 'min' / 'max'")
    elif (bound in DROP_BOUNDS) != (direction == "higher"):
        keys = DROP_BOUNDS if direction == "higher" else RISE_BOUNDS
        problems.append(
            f"{label}: {metric!r} is {direction}-is-better: {bound!r} bounds the wrong "
            f"way; use {' or '.join(repr(k) for k in keys)}"
        )
    return bound, float(value)


def _parse_selectors(
    raw: dict[str, Any], label: str, problems: list[str]
) -> dict[str, tuple[str, ...] | None]:
    """The attack/loss/engine selectors; a bad one is reported and treated as '*'."""
    selectors: dict[str, tuple[str, ...] | None] = {}
    for key in ("attack", "loss", "engine"):
        try:
            selectors[key] = _selector(raw.get(key, "*"), key)
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            selectors[key] = None
    return selectors


def _parse_epsilon_range(
    raw: dict[str, Any], label: str, problems: list[str]
) -> dict[str, float | None]:
    """epsilon / epsilon_min / epsilon_max (None where absent or bad) and their consistency."""
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
    return eps


def _check_measurable(
    metric: str | None,
    selectors: dict[str, tuple[str, ...] | None],
    eps: dict[str, float | None],
    label: str,
    problems: list[str],
) -> None:
    """Selector/metric combinations that can never be measured are typos, not empty matches."""
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
    certified = attacks is not None and CERTIFIED in attacks
    if metric in CERTIFIED_METRICS and attacks != (CERTIFIED,):
        problems.append(f"{label}: {metric!r} is measured by certification: use attack='certified'")
    elif certified and metric is not None and metric not in CERTIFIED_METRICS:
        problems.append(
            f"{label}: attack='certified' has the metrics {', '.join(CERTIFIED_METRICS)}"
            + ("" if attacks == (CERTIFIED,) else ", and cannot be listed with attacks")
        )
    if certified and selectors["loss"] is not None:
        problems.append(f"{label}: 'loss' does not apply to attack='certified'")


def parse_rule(raw: Any, index: int, problems: list[str]) -> Rule | None:
    """One [[rules]] table -> Rule, appending every problem found to `problems`."""
    label = f"rule {index}"
    if not isinstance(raw, dict):
        problems.append(f"{label}: must be a table ([[rules]]), got {type(raw).__name__}")
        return None
    if isinstance(raw.get("name"), str) and raw["name"].strip():
        label = f"rule {index} ({raw['name']!r})"
    start = len(problems)

    _check_rule_keys(raw, label, problems)
    metric = _parse_metric(raw, label, problems)
    bound, threshold = _parse_bound(raw, metric, label, problems)
    selectors = _parse_selectors(raw, label, problems)
    eps = _parse_epsilon_range(raw, label, problems)
    _check_measurable(metric, selectors, eps, label, problems)
    class_label = _parse_label(raw, metric, label, problems)

    if len(problems) > start or metric is None or bound is None or threshold is None:
        return None
    name = raw.get("name")
    if not isinstance(name, str):
        name = _describe(metric, bound, threshold, selectors, eps)
        if class_label is not None:
            name = f"{name} [label={class_label}]"
    return Rule(
        name=name.strip(),
        metric=metric,
        bound=bound,
        threshold=threshold,
        attacks=selectors["attack"],
        losses=selectors["loss"],
        engines=selectors["engine"],
        epsilon=eps["epsilon"],
        epsilon_min=eps["epsilon_min"],
        epsilon_max=eps["epsilon_max"],
        label=class_label,
    )


def _parse_label(
    raw: dict[str, Any], metric: str | None, label: str, problems: list[str]
) -> str | None:
    """The optional class selector: a non-empty name or an index, for a per-class metric."""
    if "label" not in raw:
        return None
    value = raw["label"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        problems.append(f"{label}: 'label' must be a class name or index, got {value!r}")
        return None
    if metric is not None and metric not in LABEL_METRICS:
        problems.append(
            f"{label}: 'label' selects a per-class score; {metric!r} has none "
            f"(per-class metrics: {', '.join(LABEL_METRICS)})"
        )
    return str(value).strip()
