"""Rules against a baseline report (max_drop / max_relative_drop / max_rise /
max_relative_rise): each selected measurement is compared with the same one of the baseline,
a measurement the baseline lacks fails the rule, and `segshield gate --baseline`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from test_gate_evaluate import ORT, _eval, make_report
from typer.testing import CliRunner

from segshield.errors import PolicyError
from segshield.gate import GateResult, evaluate, policy_from_dict
from segshield.gate.rules import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    METRICS,
    PERTURBATION_METRICS,
    metric_direction,
)
from segshield.gate.verify import require_baseline
from segshield.results import AuditCell, AuditReport, Evaluation, WorstCase

PGD8 = AuditCell.make_id("pgd", "bce", 8 / 255)


def _shifted(report: AuditReport, dice: float = 0.0, success: float = 0.0) -> AuditReport:
    """A copy with every attack cell's Dice moved by `dice` and attack_success by `success`."""
    new = copy.deepcopy(report)
    for cell in new.cells:
        for ev in cell.engines.values():
            ev.metrics.dice += dice
            ev.attack_success += success
    return new


def _gate(report: AuditReport, baseline: AuditReport | None, **rule: object) -> GateResult:
    policy = policy_from_dict({"policy": {"engine_health": "off"}, "rules": [rule]})
    return evaluate(report, policy, baseline)


def test_drop_within_the_absolute_bound_passes() -> None:
    result = _gate(_shifted(make_report(), dice=-0.02), make_report(), metric="dice",
                   attack="pgd", max_drop=0.025)  # fmt: skip
    outcome = result.outcomes[0]
    assert result.passed and outcome.bound == "max_drop"
    assert outcome.n_checked == 8  # 4 PGD cells x 2 engines
    assert outcome.worst_value == pytest.approx(0.02)


def test_drop_over_the_absolute_bound_fails_with_baseline_and_new() -> None:
    outcome = _gate(
        _shifted(make_report(), dice=-0.05), make_report(), metric="dice", attack="pgd",
        loss="bce", epsilon="8/255", max_drop=0.02,
    ).outcomes[0]  # fmt: skip
    assert not outcome.passed and outcome.worst_value == pytest.approx(0.05)
    assert outcome.rule == "dice drop <= 0.02 vs baseline [attack=pgd, loss=bce, eps=8/255]"
    first = outcome.failures[0]
    assert first["where"] == f"{PGD8} on pytorch"
    assert first["baseline"] == pytest.approx(0.2) and first["new"] == pytest.approx(0.15)
    assert "above max_drop 0.02" in outcome.reason and "0.2 -> 0.15" in outcome.reason


def test_an_improvement_passes() -> None:
    assert _gate(_shifted(make_report(), dice=0.1), make_report(), metric="dice",
                 attack="*", max_drop=0.0).passed  # fmt: skip


def test_relative_drop_is_a_fraction_of_the_baseline() -> None:
    new, base = _shifted(make_report(), dice=-0.05), make_report()
    # 0.05 from 0.2 is 25%, the largest relative drop (0.05 from 0.6 is 8.3%)
    bad = _gate(new, base, metric="dice", attack="pgd", loss="bce", max_relative_drop=0.2)
    outcome = bad.outcomes[0]
    assert not outcome.passed and outcome.worst_value == pytest.approx(0.25)
    assert outcome.worst_where == f"{PGD8} on pytorch"
    assert len(outcome.failures) == 2  # the 8/255 cell on both engines
    assert _gate(new, base, metric="dice", attack="pgd", loss="bce",
                 max_relative_drop=0.25).passed  # fmt: skip


def test_rise_on_a_lower_is_better_metric() -> None:
    new, base = _shifted(make_report(), success=0.03), make_report()
    assert _gate(new, base, metric="attack_success", attack="pgd", max_rise=0.03).passed
    outcome = _gate(new, base, metric="attack_success", attack="pgd", max_rise=0.01).outcomes[0]
    assert not outcome.passed and outcome.worst_value == pytest.approx(0.03)
    relative = _gate(new, base, metric="attack_success", attack="pgd", epsilon="8/255",
                     max_relative_rise=0.01)  # fmt: skip
    assert not relative.passed  # 0.03 / 0.75 = 4%


def test_clean_and_perturbation_free_metrics_on_the_clean_evaluation() -> None:
    new, base = make_report(), make_report()
    new.clean["pytorch"].metrics.dice = 0.7
    outcome = _gate(new, base, metric="dice", attack="clean", max_drop=0.05).outcomes[0]
    assert not outcome.passed and outcome.worst_where == "clean on pytorch"
    assert outcome.worst_value == pytest.approx(0.1)


def test_a_cell_missing_from_the_baseline_fails_naming_it() -> None:
    base = make_report()
    base.cells = [c for c in base.cells if c.id != PGD8]
    outcome = _gate(make_report(), base, metric="dice", attack="pgd", max_drop=0.5).outcomes[0]
    assert not outcome.passed
    assert f"baseline has no {PGD8} on pytorch" in outcome.reason
    assert outcome.n_checked == 6  # the other cells were compared
    missing = [f for f in outcome.failures if f["value"] is None]
    assert {f["where"] for f in missing} == {f"{PGD8} on pytorch", f"{PGD8} on {ORT}"}


def test_an_engine_or_value_missing_from_the_baseline_fails() -> None:
    base = make_report()
    for cell in base.cells:
        del cell.engines[ORT]
    outcome = _gate(make_report(), base, metric="dice", attack="fgsm", max_drop=0.5).outcomes[0]
    assert not outcome.passed and f"no evaluation on engine {ORT}" in outcome.reason
    base = make_report()
    base.cells[3].engines["pytorch"].metrics.dice = None
    outcome = _gate(make_report(), base, metric="dice", attack="fgsm", max_drop=0.5).outcomes[0]
    assert not outcome.passed and "baseline: dice was not measured" in outcome.reason


def test_relative_change_from_a_zero_baseline_is_unverifiable() -> None:
    base = make_report()
    base.cells[3].engines["pytorch"].attack_success = 0.0
    outcome = _gate(make_report(), base, metric="attack_success", attack="fgsm",
                    engine="pytorch", max_relative_rise=0.1).outcomes[0]  # fmt: skip
    assert not outcome.passed and "baseline attack_success is 0" in outcome.reason
    same = _gate(base, base, metric="attack_success", attack="fgsm", engine="pytorch",
                 max_relative_rise=0.0)  # fmt: skip
    assert same.passed  # 0 -> 0 is no change


def _with_worst_case(report: AuditReport, dice: float) -> AuditReport:
    engines = {"pytorch": _eval("pytorch", dice), ORT: _eval(ORT, dice - 0.01)}
    report.evaluation = Evaluation(worst_case=[WorstCase(epsilon=8 / 255, engines=engines)])
    return report


def test_worst_case_baseline_rule() -> None:
    new = _with_worst_case(make_report(), 0.25)
    base = _with_worst_case(make_report(), 0.3)
    rule = {"metric": "dice", "attack": "worst_case", "epsilon": "8/255"}
    outcome = _gate(new, base, **rule, max_drop=0.01).outcomes[0]
    assert not outcome.passed and outcome.worst_value == pytest.approx(0.05)
    assert outcome.worst_where.startswith("worst_case/")
    assert _gate(new, base, **rule, max_drop=0.05).passed
    without = _gate(new, make_report(), **rule, max_drop=1.0).outcomes[0]
    assert not without.passed and "baseline has no worst_case/" in without.reason


def test_without_a_baseline_the_rule_fails_and_the_policy_is_refused() -> None:
    outcome = _gate(make_report(), None, metric="dice", attack="pgd", max_drop=0.1).outcomes[0]
    assert not outcome.passed and "needs --baseline" in outcome.reason
    policy = policy_from_dict({"rules": [{"metric": "dice", "max_drop": 0.1}]})
    assert policy.needs_baseline
    with pytest.raises(PolicyError, match="need --baseline"):
        require_baseline(policy, has_baseline=False)
    require_baseline(policy, has_baseline=True)
    absolute = policy_from_dict({"rules": [{"metric": "dice", "min": 0.1}]})
    assert not absolute.needs_baseline
    require_baseline(absolute, has_baseline=False)


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"metric": "attack_success", "max_drop": 0.1}, "lower-is-better"),
        ({"metric": "dice", "max_rise": 0.1}, "'max_drop' or 'max_relative_drop'"),
        ({"metric": "abstain_share", "attack": "certified", "max_relative_drop": 0.1},
         "'max_rise' or 'max_relative_rise'"),
        ({"metric": "ssim_mean", "max_drop": 0.1}, "no better direction"),
        ({"metric": "dice", "max_drop": -0.1}, ">= 0"),
        ({"metric": "dice", "min": 0.5, "max_drop": 0.1}, "exactly one of 'min' or 'max_drop'"),
        ({"metric": "dice"}, "or, against a baseline, one of max_drop"),
    ],
)  # fmt: skip
def test_bad_baseline_bounds_are_policy_errors(rule: dict, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_dict({"rules": [rule]})
    assert needle in str(info.value)


def test_every_metric_has_one_direction_but_the_perturbation() -> None:
    assert not set(HIGHER_IS_BETTER) & set(LOWER_IS_BETTER)
    for metric in METRICS:
        direction = metric_direction(metric)
        assert (direction is None) == (metric in PERTURBATION_METRICS), metric
    assert metric_direction("attack_success_ci_high") == "lower"


# ---- `segshield gate --baseline` on two real quick audits ----

BASE_POLICY = """
[[rules]]
name = "PGD Dice holds"
metric = "dice"
attack = "pgd"
{epsilon}
max_drop = 1.0
"""


@pytest.fixture(scope="module")
def two_audits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A baseline audit at 2 and 8/255, and a new one at 2 and 4/255 (no 4/255 baseline)."""
    from segshield.api import audit
    from segshield.audits import AuditConfig

    fast = {"limit": 2, "attacks": ("fgsm", "pgd"), "steps": 2, "engines": ("pytorch",),
            "bench": False, "panels": 0, "probe_images": 2, "n_boot": 20}  # fmt: skip
    paths = []
    for name, epsilons in (("base", (2 / 255, 8 / 255)), ("new", (2 / 255, 4 / 255))):
        out = tmp_path_factory.mktemp(name)
        outcome = audit(AuditConfig(out_dir=out, epsilons=epsilons, **fast))
        paths.append(outcome.files["json"])
    return paths[0], paths[1]


def test_cli_gate_with_a_baseline(two_audits: tuple[Path, Path], tmp_path: Path) -> None:
    from segshield.cli.main import app

    base, new = two_audits
    runner = CliRunner()

    def run(policy_text: str, *extra: str) -> int:
        policy = tmp_path / "p.toml"
        policy.write_text(policy_text)
        args = ["gate", str(new), "--policy", str(policy), *extra]
        return runner.invoke(app, args).exit_code

    shared = BASE_POLICY.format(epsilon='epsilon = "2/255"')
    assert run(shared, "--baseline", str(base)) == 0
    assert run(BASE_POLICY.format(epsilon=""), "--baseline", str(base)) == 1  # no 4/255 base
    assert run(shared) == 2  # a baseline rule without --baseline
    assert run(shared, "--baseline", str(tmp_path / "missing.json")) == 2


def test_cli_audit_refuses_a_baseline_policy_before_running(tmp_path: Path, monkeypatch) -> None:
    from segshield.cli.main import app

    def no_audit(*args: object, **kwargs: object) -> None:
        raise AssertionError("the audit ran")

    monkeypatch.setattr("segshield.api.audit", no_audit)
    policy = tmp_path / "p.toml"
    policy.write_text(BASE_POLICY.format(epsilon=""))
    args = ["audit", "--out", str(tmp_path / "out"), "--policy", str(policy)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "segshield gate" in result.output
