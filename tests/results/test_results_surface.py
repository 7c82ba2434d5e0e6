"""Surface distances in the results: the task's records carry HD95/ASD per image and per cell,
JSON round-trips them, older reports without them still load, the integrity checks accept
them (and find edited ones), and the gate reads an undefined HD95 as failing, naming it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from segshield.enums import TaskKind
from segshield.errors import DataError
from segshield.gate import evaluate, policy_from_dict
from segshield.gate.rules import metric_direction
from segshield.results import AuditReport, EngineEval, Metrics
from segshield.results.integrity import integrity_problems
from segshield.tasks import SegmentationTask, metrics_record, per_image_record


def _square(r: int, c: int) -> np.ndarray:
    m = np.zeros((12, 12), bool)
    m[r : r + 5, c : c + 5] = True
    return m


A, B = _square(2, 2), _square(2, 4)  # offset by 2 columns: HD95 2, ASD 1 (pixels)
EMPTY = np.zeros((12, 12), bool)


def _eval(preds: list[np.ndarray], truths: list[np.ndarray], **task_kw) -> EngineEval:
    task = SegmentationTask(TaskKind.BINARY, 1, **task_kw)
    acc = task.accumulator()
    logits = np.where(np.stack(preds)[:, None], 3.0, -3.0).astype(np.float32)
    acc.update(logits, np.stack(truths)[:, None].astype(np.uint8))
    result = acc.result()
    return EngineEval(
        "pytorch", metrics=metrics_record(result), per_image=per_image_record(result, acc.counts())
    )


def _report(ev: EngineEval) -> AuditReport:
    return AuditReport(
        provenance={}, config={}, model={}, dataset={"n_images": ev.metrics.n_images},
        clean={"pytorch": ev},
    )  # fmt: skip


def test_task_records_carry_surface_distances_through_json() -> None:
    ev = _eval([A, A, B], [B, EMPTY, EMPTY])  # 2 empty truths: undefined, not averaged
    m, pi = ev.metrics, ev.per_image
    assert (m.hd95, m.asd, m.surface_unit) == (2.0, 1.0, "pixel")
    assert (m.n_empty_truth, m.n_surface_undefined) == (2, 0)
    assert pi.hd95 == [2.0, None, None] and pi.asd == [1.0, None, None]
    assert m.per_class[0].hd95 == 2.0
    raw = json.loads(json.dumps(_report(ev).to_dict(), allow_nan=False))
    back = AuditReport.from_dict(raw).clean["pytorch"]
    assert back.metrics == m and back.per_image == pi
    assert (
        ev.value("hd95") == 2.0 and metric_direction("hd95") == metric_direction("asd") == "lower"
    )


def test_spacing_comes_from_the_task_in_mm() -> None:
    ev = _eval([A], [_square(4, 2)], spacing=[2.0, 1.0])  # a 2-row offset at 2 mm per row
    assert (ev.metrics.hd95, ev.metrics.asd, ev.metrics.surface_unit) == (4.0, 1.75, "mm")
    assert _eval([A], [B], surface_metrics=False).metrics.hd95 is None


def test_task_refuses_a_spacing_that_does_not_fit() -> None:
    with pytest.raises(DataError, match="positive"):
        SegmentationTask(spacing=(1.0, -1.0))
    task = SegmentationTask(spacing=(1.0, 1.0, 2.0))
    with pytest.raises(DataError, match="3 values but the images"):
        task.check_output(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_older_reports_without_surface_fields_load() -> None:
    ev = _eval([A], [B])
    raw = _report(ev).to_dict()
    for key in ("hd95", "asd", "n_surface_undefined", "surface_unit"):
        del raw["clean"]["pytorch"]["metrics"][key]
    for key in ("hd95", "asd"):
        del raw["clean"]["pytorch"]["per_image"][key]
        del raw["clean"]["pytorch"]["metrics"]["per_class"][0][key]
    old = AuditReport.from_dict(raw).clean["pytorch"]
    assert old.metrics.hd95 is None and old.metrics.n_surface_undefined == 0
    assert old.per_image.hd95 is None and old.metrics.per_class[0].asd is None
    assert integrity_problems(AuditReport.from_dict(raw)) == []


def test_integrity_accepts_the_fields_and_finds_edited_ones() -> None:
    ev = _eval([A, EMPTY, B], [B, A, EMPTY])  # image 1 missed: undefined
    assert ev.metrics.n_surface_undefined == 1
    report = _report(ev)
    assert integrity_problems(report) == []
    bad = copy.deepcopy(report)
    bad.clean["pytorch"].metrics.hd95 = -1.0
    assert any("hd95 = -1.0 is negative" in p for p in integrity_problems(bad))
    bad = copy.deepcopy(report)
    bad.clean["pytorch"].metrics.asd = 0.5
    assert any("asd = 0.5 but its images give 1.0" in p for p in integrity_problems(bad))
    bad = copy.deepcopy(report)
    bad.clean["pytorch"].metrics.n_surface_undefined = 0
    assert any("has 2 nulls" in p for p in integrity_problems(bad))
    bad = copy.deepcopy(report)
    bad.clean["pytorch"].per_image.hd95 = [2.0, -3.0, None]
    assert any("distances >= 0 or null" in p for p in integrity_problems(bad))


def test_the_gate_fails_an_undefined_hd95_naming_it() -> None:
    rule = {"rules": [{"metric": "hd95", "attack": "clean", "max": 5.0}]}
    defined = evaluate(_report(_eval([A, A], [B, EMPTY])), policy_from_dict(rule))
    assert defined.passed and defined.outcomes[0].worst_value == 2.0
    # the lesion of image 1 is not predicted at all: the stored mean (2.0, over image 0)
    # stays in the report, but the gate reads hd95 as undefined there and fails the rule
    ev = _eval([A, EMPTY], [B, A])
    assert ev.metrics.hd95 == 2.0 and ev.value("hd95") is None and ev.value("asd") is None
    result = evaluate(_report(ev), policy_from_dict(rule))
    outcome = result.outcomes[0]
    assert not result.passed and outcome.n_checked == 0
    assert "hd95" in outcome.reason and outcome.failures[0]["value"] is None
    # lower is better: a baseline bound on it is a rise
    policy_from_dict({"rules": [{"metric": "asd", "attack": "clean", "max_rise": 1.0}]})
    with pytest.raises(Exception, match="lower-is-better"):
        policy_from_dict({"rules": [{"metric": "asd", "attack": "clean", "max_drop": 1.0}]})


def test_metrics_defaults_keep_the_catalogue_reading_by_name() -> None:
    m = Metrics(hd95=3.0, asd=1.5)
    ev = EngineEval("onnxruntime", metrics=m)
    assert ev.value("hd95") == 3.0 and ev.value("asd") == 1.5
