"""The gate's metric catalogue comes from the result types: a metric added to Metrics, a
comparison of EngineEval or a perturbation field is gateable without editing the gate."""

from __future__ import annotations

import dataclasses

import pytest

from segshield.gate import METRICS, evaluate, policy_from_dict
from segshield.gate.policy import PERTURBATION_METRICS as GATE_PERTURBATION
from segshield.gate.policy import SOURCE_RELATIVE_METRICS
from segshield.results import (
    COMPARISONS,
    GATE_METRICS,
    PERTURBATION_METRICS,
    AuditCell,
    AuditReport,
    EngineEval,
    Metrics,
    Perturbation,
)
from segshield.results.catalogue import CERTIFIED_METRICS, METRIC_FIELDS


def test_the_gate_lists_the_catalogue() -> None:
    assert tuple(METRICS) == tuple(GATE_METRICS)
    assert tuple(GATE_PERTURBATION) == tuple(PERTURBATION_METRICS)
    assert set(SOURCE_RELATIVE_METRICS) <= set(COMPARISONS)
    for name in ("dice", "accuracy", "flip_rate", "success_rate", "dice_ci_low", "ssim_min"):
        assert name in METRICS


@pytest.mark.parametrize("metric", GATE_METRICS)
def test_every_catalogue_metric_parses(metric: str) -> None:
    attack = "pgd" if metric.startswith("attack_success") else "*"
    attack = "certified" if metric in CERTIFIED_METRICS else attack
    policy = policy_from_dict({"rules": [{"metric": metric, "attack": attack, "min": 0.0}]})
    assert policy.rules[0].metric == metric
    assert policy.rules[0].per_engine == (metric not in PERTURBATION_METRICS)


def test_every_float_field_of_metrics_is_gateable() -> None:
    floats = [f.name for f in dataclasses.fields(Metrics) if "float" in str(f.type)]
    # threshold is a setting recorded with the metrics, not a measurement
    assert set(floats) - {"threshold"} == set(METRIC_FIELDS) <= set(METRICS)
    assert "threshold" not in METRICS


@pytest.mark.parametrize("metric", [*METRIC_FIELDS, "flip_rate", "success_rate", "ssim_max"])
def test_a_stored_value_is_read_by_name(metric: str) -> None:
    """Each metric is read through EngineEval.value / the cell's perturbation, by name."""
    if metric == "ssim_max":  # not a Perturbation field: refused, not silently passed
        with pytest.raises(Exception, match="unknown metric"):
            policy_from_dict({"rules": [{"metric": metric, "min": 0.0}]})
        return
    ev = EngineEval("pytorch", metrics=Metrics())
    if metric in METRIC_FIELDS:
        setattr(ev.metrics, metric, 0.25)
    else:
        setattr(ev, metric, 0.25)
    cell = AuditCell(
        id="pgd/bce/0.01", attack="pgd", loss="bce", epsilon=0.01,
        perturbation=Perturbation(ssim_mean=0.9), engines={"pytorch": ev},
    )  # fmt: skip
    report = AuditReport(provenance={}, config={}, model={}, dataset={}, cells=[cell])
    result = evaluate(report, policy_from_dict({"rules": [{"metric": metric, "min": 0.25}]}))
    assert result.passed and result.outcomes[0].worst_value == 0.25
    ssim = evaluate(report, policy_from_dict({"rules": [{"metric": "ssim_mean", "min": 0.9}]}))
    assert ssim.passed and ssim.outcomes[0].n_checked == 1
