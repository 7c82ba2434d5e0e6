"""The gate on the evaluation-strength sections: the worst case (attack "worst_case"),
certified robustness (attack "certified", ε = radius) and the masking warnings
([policy] evaluation_warnings)."""

from __future__ import annotations

import pytest
from test_gate_evaluate import ORT, _eval, make_report

from segshield.errors import PolicyError
from segshield.gate import evaluate, policy_from_dict
from segshield.results import Evaluation, WorstCase

WARNING = {
    "check": "flat_loss",
    "message": "loss bce has a zero input gradient on 4 of 4 probe images",
    "attack": None,
    "loss": "bce",
    "epsilon": None,
    "engine": "pytorch",
    "evidence": {"share": 1.0},
}
CERTIFIED = {
    "settings": {"sigma": 0.25, "n": 100},
    "engines": {
        "pytorch": {
            "radii": [0.0, 0.25],
            "certified_dice": [0.7, 0.4],
            "certified_share": [0.9, 0.5],
            "certified_any_share": [0.95, 0.6],
            "abstain_share": [0.05, 0.05],
        },
        ORT: {"error": "RuntimeError: engine crashed"},
    },
}


def _report(warnings: list | None = None, probes: dict | None = None, **kw: object):
    worst = [
        WorstCase(epsilon=4 / 255, cells=["pgd/bce/0.0156863"],
                  engines={"pytorch": _eval("pytorch", 0.55), ORT: _eval(ORT, 0.52)}),
        WorstCase(epsilon=8 / 255, engines={"pytorch": _eval("pytorch", 0.3),
                                            ORT: _eval(ORT, 0.31)}),
    ]  # fmt: skip
    evaluation = Evaluation(worst_case=worst, warnings=warnings or [], probes=probes)
    return make_report(evaluation=evaluation, **kw)


def _gate(report, rules: list[dict], **header: str):
    policy = policy_from_dict({"policy": {"engine_health": "off", **header}, "rules": rules})
    return evaluate(report, policy)


def test_worst_case_rule_reads_every_engine_at_the_selected_epsilon() -> None:
    rule = {"metric": "dice", "attack": "worst_case", "epsilon": "4/255", "min": 0.53}
    outcome = _gate(_report(), [rule]).outcomes[0]
    assert not outcome.passed and outcome.n_checked == 2
    assert outcome.worst_value == pytest.approx(0.52)
    assert outcome.worst_where == f"worst_case/*/0.0156863 on {ORT}"


def test_star_does_not_select_the_worst_case_or_certified() -> None:
    star = _gate(_report(certified=CERTIFIED), [{"metric": "dice", "attack": "*", "min": 0.0}])
    assert not any("worst_case" in f["where"] for f in star.outcomes[0].failures)
    plain = _gate(make_report(), [{"metric": "dice", "attack": "*", "min": 0.0}])
    assert star.outcomes[0].n_checked == plain.outcomes[0].n_checked


def test_worst_case_rule_on_a_report_without_it_matches_nothing() -> None:
    outcome = _gate(make_report(), [{"metric": "dice", "attack": "worst_case", "min": 0.1}])
    assert not outcome.outcomes[0].passed
    assert "matched no audit cell" in outcome.outcomes[0].reason


def test_certified_rule_per_engine_and_radius_and_a_failed_engine_is_unverifiable() -> None:
    rule = {"metric": "certified_dice", "attack": "certified", "epsilon": 0.25, "min": 0.3}
    outcome = _gate(_report(certified=CERTIFIED), [rule]).outcomes[0]
    assert outcome.n_checked == 1 and outcome.worst_value == pytest.approx(0.4)
    assert not outcome.passed and "certification of onnxruntime failed" in outcome.reason
    only_source = {**rule, "engine": "pytorch"}
    assert _gate(_report(certified=CERTIFIED), [only_source]).outcomes[0].passed


def test_certified_rule_without_certification_says_how_to_get_it() -> None:
    rule = {"metric": "abstain_share", "attack": "certified", "max": 0.1}
    outcome = _gate(_report(), [rule]).outcomes[0]
    assert not outcome.passed and "--certify" in outcome.reason


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "certified_dice", "attack": "pgd", "min": 0.1}, "use attack='certified'"),
        ({"metric": "dice", "attack": "certified", "min": 0.1}, "has the metrics"),
        ({"metric": "certified_dice", "attack": "certified", "loss": "bce", "min": 0.1}, "loss"),
    ],
)
def test_certified_rules_that_can_never_be_measured_are_refused(rule: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_dict({"rules": [rule]})


def test_evaluation_warnings_fail_the_release_only_when_the_policy_says_so() -> None:
    rule = {"metric": "dice", "attack": "clean", "min": 0.0}
    report = _report(warnings=[WARNING], probes={"images": 4})
    assert _gate(report, [rule]).passed  # default "off"
    result = _gate(report, [rule], evaluation_warnings="fail")
    assert not result.passed
    extra = result.outcomes[-1]
    assert extra.metric == "evaluation_warnings" and WARNING["message"] in extra.reason


def test_evaluation_warnings_pass_when_the_checks_ran_clean_and_fail_when_not_run() -> None:
    rule = {"metric": "dice", "attack": "clean", "min": 0.0}
    assert _gate(_report(probes={"images": 4}), [rule], evaluation_warnings="fail").passed
    not_run = _gate(_report(), [rule], evaluation_warnings="fail")
    assert not not_run.passed and "ran no gradient-masking checks" in not_run.outcomes[-1].reason


def test_evaluation_warnings_level_is_validated() -> None:
    with pytest.raises(PolicyError, match="evaluation_warnings must be one of fail, off"):
        policy_from_dict(
            {"policy": {"evaluation_warnings": "maybe"}, "rules": [{"metric": "dice", "min": 0}]}
        )


def test_a_worst_case_missing_a_failed_cell_cannot_be_verified() -> None:
    report = _report()
    report.evaluation.worst_case[1].failed = ["pgd/bce/0.0313725"]
    rule = {"metric": "dice", "attack": "worst_case", "epsilon": "8/255", "min": 0.0}
    outcome = _gate(report, [rule]).outcomes[0]
    assert not outcome.passed and outcome.n_checked == 0
    assert "misses the failed cell(s) pgd/bce/0.0313725" in outcome.reason
    other = {**rule, "epsilon": "4/255"}
    assert _gate(report, [other]).passed


def test_checks_that_crashed_are_named_when_warnings_are_gated() -> None:
    crash = {"check": "gradient-masking_checks_failed", "message": "the checks could not be "
             "measured: RuntimeError: boom"}  # fmt: skip
    report = _report(warnings=[crash], probes=None)
    rule = {"metric": "dice", "attack": "clean", "min": 0.0}
    outcome = _gate(report, [rule], evaluation_warnings="fail").outcomes[-1]
    assert not outcome.passed and "RuntimeError: boom" in outcome.reason
