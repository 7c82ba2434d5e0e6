"""Gate evaluation on small hand-built audit reports."""

from __future__ import annotations

import json

import pytest

from segshield.engines.records import EngineRecord
from segshield.gate import GateResult, evaluate, example_policy_path, policy_from_dict
from segshield.gate import policy_from_toml as load_policy
from segshield.results import AuditCell, AuditReport, EngineEval, Metrics, Perturbation

ORT = "onnxruntime"


def _eval(engine: str, dice: float | None, **extra: float | None) -> EngineEval:
    metrics = Metrics(dice=dice, iou=None if dice is None else dice * 0.8, loss=0.3)
    return EngineEval(engine=engine, metrics=metrics, **extra)


def _cell(attack: str, loss: str, k: int, dice: float, ort_dice: float, **kw: object) -> AuditCell:
    eps = k / 255
    return AuditCell(
        id=AuditCell.make_id(attack, loss, eps),
        attack=attack,
        loss=loss,
        epsilon=eps,
        perturbation=Perturbation(ssim_mean=0.99 - k / 100, ssim_min=0.95 - k / 100, linf_max=eps),
        engines={
            "pytorch": _eval("pytorch", dice, attack_success=1 - dice / 0.8),
            ORT: _eval(
                ORT,
                ort_dice,
                attack_success=1 - ort_dice / 0.8,
                disagreement=0.001 * k,
                dice_gap=ort_dice - dice,
            ),
        },
        **kw,
    )


def make_report(**overrides: object) -> AuditReport:
    """Two engines, clean Dice 0.8, PGD/BCE at 2, 4, 8/255, FGSM/BCE at 4/255, PGD/Dice at 4."""
    fields: dict = {
        "provenance": {"segshield": "0.1.0"},
        "config": {"losses": ["bce"]},
        "model": {"name": "unet"},
        "dataset": {"name": "nuclei"},
        "engines": [
            EngineRecord(name="pytorch", kind="torch"),
            EngineRecord(name=ORT, kind="onnxruntime", providers=["CPUExecutionProvider"]),
        ],
        "clean": {
            "pytorch": _eval("pytorch", 0.8),
            ORT: _eval(ORT, 0.79, disagreement=0.002, dice_gap=-0.01),
        },
        "cells": [
            _cell("pgd", "bce", 2, 0.6, 0.59),
            _cell("pgd", "bce", 4, 0.5, 0.5),
            _cell("pgd", "bce", 8, 0.2, 0.21),
            _cell("fgsm", "bce", 4, 0.55, 0.54),
            _cell("pgd", "dice", 4, 0.45, 0.44),
        ],
    }
    fields.update(overrides)
    return AuditReport(**fields)


def gate(report: AuditReport, **rule: object) -> GateResult:
    return evaluate(report, policy_from_dict({"rules": [rule]}))


def test_min_rule_passes_at_the_boundary() -> None:
    result = gate(make_report(), metric="dice", attack="pgd", loss="bce", epsilon="4/255", min=0.5)
    outcome = result.outcomes[0]
    assert result.passed and outcome.passed
    assert outcome.n_checked == 2
    assert outcome.worst_value == 0.5
    assert outcome.failures == [] and outcome.reason is None


def test_min_rule_fails_just_above_the_boundary() -> None:
    result = gate(
        make_report(), metric="dice", attack="pgd", loss="bce", epsilon="4/255", min=0.5000001
    )
    outcome = result.outcomes[0]
    assert not result.passed
    assert {f["where"] for f in outcome.failures} == {
        "pgd/bce/0.0156863 on pytorch",
        "pgd/bce/0.0156863 on onnxruntime",
    }
    assert "2 of 2 measurement(s) below min" in (outcome.reason or "")
    assert result.failed_rules() == [outcome]


def test_worst_value_and_where() -> None:
    outcome = gate(make_report(), metric="dice", attack="pgd", min=0.3).outcomes[0]
    assert not outcome.passed
    assert outcome.n_checked == 8  # 4 PGD cells x 2 engines
    assert outcome.worst_value == 0.2
    assert outcome.worst_where == "pgd/bce/0.0313725 on pytorch"
    assert [f["value"] for f in outcome.failures] == [0.2, 0.21]


def test_max_rule() -> None:
    report = make_report()
    ok = gate(report, metric="disagreement", max=0.008).outcomes[0]
    assert ok.passed
    assert ok.worst_value == pytest.approx(0.008)
    assert ok.worst_where == "pgd/bce/0.0313725 on onnxruntime"
    # "*" on disagreement skips the source engine: 5 cells, one engine.
    assert ok.n_checked == 5
    bad = gate(report, metric="disagreement", max=0.003).outcomes[0]
    assert not bad.passed
    assert len(bad.failures) == 4  # the three 4/255 cells and 8/255
    assert "above max 0.003" in (bad.reason or "")


def test_selectors_by_attack_engine_loss_and_epsilon() -> None:
    report = make_report()
    by_attack = gate(report, metric="dice", attack="fgsm", min=0.0).outcomes[0]
    assert by_attack.n_checked == 2
    by_engine = gate(report, metric="dice", engine=ORT, min=0.0).outcomes[0]
    assert by_engine.n_checked == 5
    assert all(f.endswith(ORT) for f in [by_engine.worst_where or ""])
    by_loss = gate(report, metric="dice", loss="dice", min=0.0).outcomes[0]
    assert by_loss.n_checked == 2
    assert by_loss.worst_where is not None and by_loss.worst_where.startswith("pgd/dice/")
    by_eps = gate(report, metric="dice", attack="pgd", epsilon_max="4/255", min=0.45).outcomes[0]
    assert by_eps.n_checked == 6  # 2/255 and 4/255 for bce, 4/255 for dice
    assert not by_eps.passed and by_eps.worst_value == 0.44
    above = gate(report, metric="dice", epsilon_min="5/255", min=0.0).outcomes[0]
    assert above.n_checked == 2


def test_clean_selector() -> None:
    report = make_report()
    outcome = gate(report, metric="dice", attack="clean", min=0.79).outcomes[0]
    assert outcome.passed and outcome.n_checked == 2
    assert outcome.worst_where == "clean on onnxruntime"
    # "*" never includes the clean evaluation.
    star = gate(report, metric="dice", min=0.0).outcomes[0]
    assert star.n_checked == 10
    both = gate(report, metric="dice", attack=["clean", "fgsm"], min=0.0).outcomes[0]
    assert both.n_checked == 4


def test_perturbation_metric_is_one_value_per_cell() -> None:
    outcome = gate(make_report(), metric="ssim_min", min=0.9).outcomes[0]
    assert outcome.n_checked == 5
    assert outcome.worst_value == pytest.approx(0.87)
    assert outcome.worst_where == "pgd/bce/0.0313725"
    assert not outcome.passed


@pytest.mark.parametrize(
    "rule",
    [
        {"metric": "dice", "attack": "pdg", "min": 0.1},
        {"metric": "dice", "engine": "onxruntime", "min": 0.1},
        {"metric": "dice", "loss": "focal", "min": 0.1},
        {"metric": "dice", "epsilon": "3/255", "min": 0.1},
    ],
)
def test_rule_matching_nothing_fails(rule: dict) -> None:
    result = gate(make_report(), **rule)
    outcome = result.outcomes[0]
    assert not result.passed
    assert outcome.n_checked == 0
    assert outcome.reason is not None and outcome.reason.startswith("matched no audit cell")


def test_source_relative_metric_without_other_engines_matches_nothing() -> None:
    report = make_report(engines=[EngineRecord(name="pytorch", kind="torch")])
    for cell in report.cells:
        del cell.engines[ORT]
    del report.clean[ORT]
    outcome = gate(report, metric="disagreement", max=0.5).outcomes[0]
    assert not outcome.passed and "matched no audit cell" in (outcome.reason or "")


def test_errored_cell_fails_matching_rule() -> None:
    report = make_report()
    report.cells[0] = AuditCell(
        id="pgd/bce/0.00784314",
        attack="pgd",
        loss="bce",
        epsilon=2 / 255,
        status="error",
        error="RuntimeError: out of memory",
    )
    outcome = gate(report, metric="dice", attack="pgd", min=0.0).outcomes[0]
    assert not outcome.passed
    assert outcome.n_checked == 6
    assert "cell pgd/bce/0.00784314 failed: RuntimeError: out of memory" in (outcome.reason or "")
    assert {"where": "pgd/bce/0.00784314", "value": None} in [
        {"where": f["where"], "value": f["value"]} for f in outcome.failures
    ]
    # A rule that does not select the failed cell is unaffected.
    assert gate(report, metric="dice", attack="fgsm", min=0.0).passed


def test_errored_engine_eval_and_missing_value_fail() -> None:
    report = make_report()
    report.cells[3].engines[ORT] = EngineEval(engine=ORT, status="error", error="bad shape")
    outcome = gate(report, metric="dice", attack="fgsm", min=0.0).outcomes[0]
    assert not outcome.passed
    assert "failed on engine onnxruntime: bad shape" in (outcome.reason or "")
    report = make_report()
    report.cells[3].engines[ORT].metrics = Metrics(dice=float("nan"))
    outcome = gate(report, metric="dice", attack="fgsm", min=0.0).outcomes[0]
    assert not outcome.passed and "was not measured" in (outcome.reason or "")


def test_unavailable_engine_fails_rule_that_selects_it() -> None:
    report = make_report()
    report.engines.append(
        EngineRecord(name="tensorrt", kind="tensorrt", status="unavailable", reason="no CUDA")
    )
    outcome = gate(report, metric="dice", attack="fgsm", min=0.0).outcomes[0]
    assert not outcome.passed
    assert "engine tensorrt was unavailable: no CUDA" in (outcome.reason or "")
    assert outcome.n_checked == 2  # the available engines were still checked
    assert gate(report, metric="dice", attack="fgsm", engine=ORT, min=0.0).passed


def test_gate_result_to_dict_is_json() -> None:
    report = make_report()
    report.cells[0].status = "error"
    report.cells[0].error = "boom"
    policy = policy_from_dict(
        {
            "policy": {"name": "ci"},
            "rules": [
                {"metric": "dice", "attack": "pgd", "min": 0.3},
                {"metric": "loss", "attack": "fgsm", "max": 1.0},
            ],
        }
    )
    result = evaluate(report, policy)
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert data["policy_name"] == "ci"
    assert data["passed"] is False
    # two rules + the engine-health outcome (no health measured here: it passes)
    assert data["n_rules"] == 3 and data["n_failed"] == 1
    assert {
        "where": "pgd/bce/0.00784314",
        "value": None,
        "reason": "cell pgd/bce/0.00784314 failed: boom",
    } in data["outcomes"][0]["failures"]
    report.verdict = data
    assert AuditReport.from_dict(json.loads(json.dumps(report.to_dict()))).verdict == data


def test_example_policy_runs_on_report(cli_audit) -> None:
    """Every rule of the shipped example policy selects measurements of a real default audit
    (a rule that matched nothing would fail the gate for the wrong reason)."""
    report = AuditReport.from_dict(cli_audit.report)
    result = evaluate(report, load_policy(example_policy_path()))
    # the rules + the engine-health outcome + the evaluation-warnings outcome
    assert len(result.outcomes) == 8 + 2
    assert result.outcomes[-2].rule.startswith("every engine's health is at least degraded")
    assert result.outcomes[-1].metric == "evaluation_warnings"
    for outcome in result.outcomes:
        assert outcome.n_checked > 0, outcome.rule
        assert outcome.reason is None or "matched no audit cell" not in outcome.reason


def _health(status: str, mask_dice: float | None, reason: str | None = None) -> dict:
    return {"status": status, "mask_dice": mask_dice, "flip_share": 0.0, "n_images": 4,
            "ok_min": 0.97, "failed_below": 0.8, "reason": reason}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "mask_dice", "level", "passed"),
    [
        ("ok", 0.99, "degraded", True),
        ("degraded", 0.9, "degraded", True),
        ("degraded", 0.9, "ok", False),
        ("failed", 0.0, "degraded", False),
        ("failed", None, "degraded", False),  # could not be scored at all
        ("failed", 0.0, "off", True),
    ],
)
def test_engine_health_is_gated(status, mask_dice, level, passed) -> None:
    report = make_report()
    report.engines[1].health = _health(status, mask_dice, reason="clean mask agreement 0.0")
    policy = policy_from_dict(
        {"policy": {"engine_health": level}, "rules": [{"metric": "dice", "attack": "clean",
                                                        "min": 0.0}]}
    )  # fmt: skip
    result = evaluate(report, policy)
    assert result.passed is passed
    health = [o for o in result.outcomes if o.metric == "engine_health_mask_dice"]
    assert len(health) == (0 if level == "off" else 1)
    if not passed:
        assert ORT in health[0].reason


def test_policy_engine_health_level_is_validated() -> None:
    with pytest.raises(Exception, match="engine_health must be one of ok, degraded, off"):
        policy_from_dict(
            {"policy": {"engine_health": "great"}, "rules": [{"metric": "dice", "min": 0}]}
        )
