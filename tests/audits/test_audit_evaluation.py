"""The evaluation-strength sections of a real audit (bundled model, real nuclei tiles, real
ONNX Runtime engine): the worst case per engine, the masking checks, the SEA ensemble cell
and randomized-smoothing certification, read back from report.json and gated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segshield.api import audit
from segshield.audits import AuditConfig, AuditReport
from segshield.gate import evaluate, policy_from_dict
from segshield.results import Status

EPS = (4 / 255, 8 / 255)


def test_the_default_audit_has_worst_case_and_checks(cli_audit) -> None:
    report = AuditReport.from_dict(cli_audit.report)
    evaluation = report.evaluation
    assert evaluation is not None and evaluation.probes is not None
    assert evaluation.probes["images"] == 2
    assert [w.epsilon for w in evaluation.worst_case] == sorted(c.epsilon for c in report.cells
                                                                if c.attack == "pgd")  # fmt: skip
    for wc in evaluation.worst_case:
        cells = [c for c in report.cells if abs(c.epsilon - wc.epsilon) < 1e-12]
        assert sorted(wc.cells) == sorted(c.id for c in cells)
        assert set(wc.engines) == {e.name for e in report.engines if e.status == "ok"}
        for name, ev in wc.engines.items():
            for cell in cells:  # per image, no attack of the audit did worse on this engine
                member = cell.engines[name]
                pairs = zip(ev.per_image.dice, member.per_image.dice, strict=True)
                assert all(w <= m + 1e-12 for w, m in pairs)
                assert ev.metrics.dice_per_image_mean <= member.metrics.dice_per_image_mean + 1e-12
    for warning in evaluation.warnings:
        assert set(warning) >= {"check", "message", "attack", "loss", "epsilon", "engine"}


@pytest.fixture(scope="module")
def strength_audit(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("strength")
    config = AuditConfig(
        out_dir=out,
        limit=2,
        attacks=("fgsm", "pgd", "apgd", "sea"),
        epsilons=EPS,
        steps=3,
        batch_size=2,
        engines=("pytorch", "ort-fp32"),
        bench=False,
        sea_members=("apgd:masked_ce", "apgd:js", "pgd:*"),
        probe_images=2,
        certify=True,
        certify_n0=4,
        certify_n=20,
        certify_sigma=0.1,
        certify_radii=(0.0, 0.05),
        panels=0,
    )
    outcome = audit(config)
    raw = json.loads((out / "report.json").read_text())
    return outcome, raw


def test_sea_cell_records_its_members_and_is_no_weaker_than_them(strength_audit) -> None:
    outcome, _ = strength_audit
    report = outcome.report
    assert all(c.status == Status.OK for c in report.cells), [c.error for c in report.cells]
    for eps in EPS:
        sea = next(c for c in report.cells if c.attack == "sea" and abs(c.epsilon - eps) < 1e-12)
        assert sea.ensemble["members"] == ["apgd:masked_ce", "apgd:js", "pgd:*"]
        assert sum(sea.ensemble["wins"]) == 2
        assert all(0 <= w < 3 for w in sea.ensemble["winner_per_image"])
        assert sea.perturbation.linf_max <= eps + 1e-6


def test_worst_case_is_at_most_every_attack_on_every_engine(strength_audit) -> None:
    report = strength_audit[0].report
    for wc in report.evaluation.worst_case:
        cells = [c for c in report.cells if abs(c.epsilon - wc.epsilon) < 1e-12]
        assert {c.attack for c in cells} == {"fgsm", "pgd", "apgd", "sea"}
        for name in ("pytorch", "ort-fp32"):
            ev = wc.engines[name]
            floor = min(c.engines[name].metrics.dice_per_image_mean for c in cells)
            assert ev.metrics.dice_per_image_mean <= floor + 1e-12
            assert len(wc.chosen[name]) == 2 and set(wc.chosen[name]) <= {c.id for c in cells}


def test_certified_section_for_source_and_engine(strength_audit) -> None:
    report = strength_audit[0].report
    section = report.certified
    assert section["settings"]["n"] == 20 and section["settings"]["images"] == 2
    for name in ("pytorch", "ort-fp32"):
        rec = section["engines"][name]
        assert rec["radii"] == [0.0, 0.05]
        assert all(0.0 <= v <= 1.0 for v in rec["certified_dice"] + rec["abstain_share"])
        # a larger radius certifies no more pixels
        assert rec["certified_any_share"][1] <= rec["certified_any_share"][0]
    src, ort = (section["engines"][n] for n in ("pytorch", "ort-fp32"))
    np.testing.assert_allclose(src["certified_dice"], ort["certified_dice"], atol=0.02)


def test_report_round_trips_and_the_gate_reads_the_new_sections(strength_audit) -> None:
    raw = strength_audit[1]
    again = AuditReport.from_dict(raw)
    assert again.to_dict()["evaluation"] == raw["evaluation"]
    assert again.certified == raw["certified"]
    policy = policy_from_dict({
        "policy": {"engine_health": "off"},
        "rules": [
            {"metric": "dice", "attack": "worst_case", "epsilon": "8/255", "min": 0.0},
            {"metric": "certified_dice", "attack": "certified", "epsilon": 0.0, "min": 0.0},
        ],
    })  # fmt: skip
    result = evaluate(again, policy)
    assert result.passed, [o.reason for o in result.outcomes]
    assert [o.n_checked for o in result.outcomes] == [2, 2]
