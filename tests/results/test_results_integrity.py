"""Report integrity: the content hash of the measured sections, and the value checks that
find edited or impossible numbers (recomputed by the metric functions from stored counts)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from segshield.results import AuditReport
from segshield.results.integrity import (
    NOT_COVERED,
    content_hash,
    covered_sections,
    integrity_problems,
    is_verified,
)

DATA = Path(__file__).parents[1] / "reports" / "data"
FIXTURES = ("report_pass", "report_fail", "report_classify", "report_v1")


def _raw(name: str = "report_pass") -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def _problems(raw: dict) -> list[str]:
    return integrity_problems(AuditReport.from_dict(raw), raw)


@pytest.mark.parametrize("name", FIXTURES)
def test_real_reports_have_no_problems(name: str) -> None:
    assert _problems(_raw(name)) == []


def test_the_hash_covers_every_section_but_the_verdict() -> None:
    raw = _raw()
    entry = content_hash(raw)
    assert entry["algorithm"] == "sha256" and len(entry["sha256"]) == 64
    assert entry["covers"] == covered_sections(raw) == sorted(set(raw) - set(NOT_COVERED))
    for section in ("engines", "clean", "cells", "latency", "build", "dataset", "model"):
        assert section in entry["covers"]
    assert "verdict" not in entry["covers"] and "integrity" not in entry["covers"]
    # the verdict (filled by the gate later) does not change it; any measured value does
    raw["verdict"] = {"passed": False}
    assert content_hash(raw) == entry
    raw["cells"][0]["seconds"] += 1
    assert content_hash(raw) != entry


def test_a_hashed_report_verifies_and_an_edit_is_found() -> None:
    raw = _raw()
    assert is_verified(raw) and _problems(raw) == []
    edited = copy.deepcopy(raw)
    edited["provenance"]["onnx_sha256"] = "0" * 64  # no value check can see this one
    assert _problems(edited) == [
        "integrity: content hash mismatch (the report was changed after it was written)"
    ]
    dropped = copy.deepcopy(raw)
    del dropped["latency"]
    assert "not the ones hashed" in _problems(dropped)[0]
    bad_entry = copy.deepcopy(raw)
    bad_entry["integrity"] = {"algorithm": "md5"}
    assert "not a sha256 content hash" in _problems(bad_entry)[0]


@pytest.mark.parametrize("name", ["report_pass", "report_fail", "report_classify"])
def test_the_fixtures_carry_a_matching_entry(name: str) -> None:
    raw = _raw(name)
    assert is_verified(raw) and raw["integrity"] == content_hash(raw)


def test_a_report_without_an_entry_is_unverified_not_refused() -> None:
    raw = _raw("report_v1")  # written by an older segshield
    assert "integrity" not in raw and not is_verified(raw)
    assert _problems(raw) == []
    stripped = _raw()
    del stripped["integrity"]
    assert not is_verified(stripped) and _problems(stripped) == []


def _cell_metrics(raw: dict, engine: str = "pytorch") -> dict:
    return raw["cells"][1]["engines"][engine]["metrics"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: _cell_metrics(r).update(dice=0.99), "metrics.dice = 0.99 but the confusion"),
        (lambda r: _cell_metrics(r).update(dice=1.7), "metrics.dice = 1.7 is outside [0, 1]"),
        (lambda r: _cell_metrics(r).update(iou=-0.1), "metrics.iou = -0.1 is outside [0, 1]"),
        (lambda r: _cell_metrics(r).update(recall=0.5), "metrics.recall = 0.5 but the"),
        (lambda r: _cell_metrics(r).update(tp=-3), "metrics.tp = -3 is not a count"),
        (
            lambda r: _cell_metrics(r).update(tp=_cell_metrics(r)["tp"] + 10),
            "but the confusion counts give",
        ),
        (lambda r: _cell_metrics(r).update(n_images=3), "metrics.n_images = 3 but the dataset"),
        (
            lambda r: r["cells"][1]["engines"]["pytorch"]["per_image"]["fp"].__setitem__(0, 0),
            "but the per-image counts sum to",
        ),
        (
            lambda r: r["cells"][1]["engines"]["pytorch"]["per_image"]["dice"].__setitem__(
                0, 0.999
            ),
            "per_image.dice[0] = 0.999 but its counts give",
        ),
        (
            lambda r: r["cells"][1]["engines"]["pytorch"].update(attack_success=0.0),
            "attack_success = 0.0 but the clean and adversarial dice give",
        ),
        (
            lambda r: r["cells"][1]["engines"]["ort-fp32"].update(disagreement=1.5),
            "disagreement = 1.5 is outside [0, 1]",
        ),
        (
            lambda r: r["cells"][1]["perturbation"].update(ssim_min=1.2),
            "ssim_min = 1.2 is outside [-1, 1]",
        ),
        (
            lambda r: r["cells"][1]["perturbation"].update(linf_max=0.5),
            "exceeds the cell's ε",
        ),
        (
            lambda r: r["clean"]["pytorch"]["metrics"]["per_class"][0].update(dice=0.5),
            "per_class[0].dice = 0.5 but its confusion counts give",
        ),
        (
            lambda r: r["clean"]["pytorch"]["ci"]["dice"].update(high=1.3),
            "ci.dice [",
        ),
    ],
)
def test_edited_values_are_found(edit, expected: str) -> None:
    raw = _raw()
    edit(raw)
    problems = _problems(raw)
    assert problems, "edit not found"
    assert any(expected in p for p in problems), problems


def test_an_edited_classifier_accuracy_is_found() -> None:
    raw = _raw("report_classify")
    metrics = raw["clean"]["pytorch"]["metrics"]
    metrics["per_class"][1]["recall"] = 0.2
    assert any("per_class[1].recall = 0.2" in p for p in _problems(raw))


def test_the_typed_report_round_trips_its_hash(tmp_path: Path) -> None:
    """write_json hashes report.to_dict(); the report read back hashes the same."""
    from segshield.reports import read_report, write_json

    report = AuditReport.from_dict(_raw())
    path = write_json(report, tmp_path / "report.json")
    raw = json.loads(path.read_text())
    assert raw["integrity"] == report.integrity == content_hash(raw)
    again = read_report(path)
    assert again.integrity == raw["integrity"]
    assert integrity_problems(again) == [] and integrity_problems(again, raw) == []


@pytest.mark.parametrize(("kind", "k"), [("binary", 1), ("multiclass", 3), ("multilabel", 3)])
def test_what_the_accumulator_produces_passes_for_every_task(kind: str, k: int) -> None:
    """No false alarm on any segmentation task (empty-truth images included), and a changed
    per-class count is found."""
    import numpy as np

    from segshield.enums import TaskKind
    from segshield.results import EngineEval
    from segshield.tasks import make_task, metrics_record, per_image_record

    rng = np.random.default_rng(0)
    acc = make_task(kind, num_classes=k).accumulator()
    logits = rng.normal(size=(5, k, 16, 16)).astype(np.float32)
    if kind == "multiclass":
        labels = rng.integers(0, k, size=(5, 1, 16, 16))
    else:
        labels = (rng.random((5, k, 16, 16)) > 0.6).astype(np.uint8)
    labels[0] = 0  # an image without foreground
    acc.update(logits, labels)
    result, counts = acc.result(), acc.counts()
    ev = EngineEval(
        "pytorch", metrics=metrics_record(result), per_image=per_image_record(result, counts)
    )
    report = AuditReport(
        provenance={}, config={}, model={}, dataset={"n_images": 5}, task=TaskKind(kind),
        clean={"pytorch": ev},
    )  # fmt: skip
    assert integrity_problems(report) == []
    ev.metrics.per_class[-1].fp += 1
    assert any("per_class" in p for p in integrity_problems(report))


def test_edited_engine_health_is_refused() -> None:
    """The gate judges health from the stored records: they must follow from the agreement
    and the audit's thresholds, whatever the hash says."""
    from segshield.engines.health import HealthThresholds, assess_health
    from segshield.engines.records import EngineRecord
    from segshield.results import AuditReport
    from segshield.results.integrity import integrity_problems

    record = EngineRecord("ort-int8", "onnxruntime")
    record.health = assess_health(0.3, 0.1, 4, HealthThresholds()).to_dict()
    report = AuditReport({}, {"health_ok_min": 0.97, "health_failed_below": 0.8}, {}, {},
                         engines=[record])  # fmt: skip
    assert integrity_problems(report) == []
    record.health["status"] = "ok"
    assert any("does not follow" in p for p in integrity_problems(report))
    record.health.update(status="failed", failed_below=0.0)
    assert any("failed_below 0.0 is not the audit's 0.8" in p for p in integrity_problems(report))
    record.health.update(failed_below=0.8, mask_dice=1.7)
    assert any("not in [0, 1]" in p for p in integrity_problems(report))
