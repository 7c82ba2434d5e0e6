"""Gating on bootstrap confidence bounds (EngineEval.ci) of the real end-to-end report."""

from __future__ import annotations

import pytest

from segshield.errors import PolicyError
from segshield.gate import evaluate, policy_from_dict
from segshield.results import AuditReport


def _rule(**kw) -> dict:
    return {"rules": [{"name": "r", **kw}]}


def test_gate_on_the_lower_confidence_bound(cli_audit) -> None:
    report = AuditReport.from_dict(cli_audit.report)
    pgd = [c for c in report.cells if c.attack == "pgd"]
    lows = [c.engines["pytorch"].ci["dice"].low for c in pgd]
    worst = min(lows)
    ok = evaluate(
        report,
        policy_from_dict(
            _rule(metric="dice_ci_low", attack="pgd", engine="pytorch", min=worst - 1e-6)
        ),
    )
    assert ok.passed and ok.outcomes[0].n_checked == len(pgd)
    bad = evaluate(
        report,
        policy_from_dict(
            _rule(metric="dice_ci_low", attack="pgd", engine="pytorch", min=worst + 1e-6)
        ),
    )
    assert not bad.passed
    assert bad.outcomes[0].worst_value == pytest.approx(worst)
    # the bound is below the point estimate, so gating on it is the stricter choice
    assert all(
        low <= c.engines["pytorch"].metrics.dice + 1e-9 for low, c in zip(lows, pgd, strict=True)
    )


def test_attack_success_bound_on_clean_is_rejected() -> None:
    with pytest.raises(PolicyError, match="no 'attack_success'"):
        policy_from_dict(_rule(metric="attack_success_ci_high", attack="clean", max=0.5))


@pytest.mark.parametrize(("text", "value"), [("0.3", 0.3), ("1", 1.0), ("4/255", 4 / 255)])
def test_epsilon_strings(text: str, value: float) -> None:
    from segshield.gate import parse_epsilon

    assert parse_epsilon(text) == pytest.approx(value)
