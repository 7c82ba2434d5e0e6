"""The worst case per engine (audits/worst_case.py): per image the minimum over every cell at
one ε, on each engine separately; hand-built cells with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.audits.worst_case import worst_cases
from segshield.enums import Status, TaskKind
from segshield.metrics import dice
from segshield.results import AuditCell, EngineEval, Metrics, PerImage
from segshield.tasks import ClassificationTask, SegmentationTask

BINARY = SegmentationTask()


def _eval(engine: str, counts: list[tuple[int, int, int, int]]) -> EngineEval:
    """A binary evaluation from per-image (tp, fp, fn, tn)."""
    tp, fp, fn, tn = (list(c) for c in zip(*counts, strict=True))
    per_dice = [
        None if t + f == 0 else float(dice(t, p, f)) for t, p, f in zip(tp, fp, fn, strict=True)
    ]
    metrics = Metrics(
        dice=float(dice(sum(tp), sum(fp), sum(fn))),
        n_images=len(counts),
        tp=sum(tp), fp=sum(fp), fn=sum(fn), tn=sum(tn),
    )  # fmt: skip
    return EngineEval(engine, metrics=metrics, per_image=PerImage(dice=per_dice, tp=tp, fp=fp,
                                                                     fn=fn, tn=tn))  # fmt: skip


def _cell(attack: str, eps: float, engines: dict[str, EngineEval]) -> AuditCell:
    cell = AuditCell(AuditCell.make_id(attack, "bce", eps), attack, "bce", eps)
    cell.engines = engines
    return cell


# Two images: image 0 large (tp 90 clean), image 1 small (tp 10 clean).
CLEAN = {"pytorch": _eval("pytorch", [(90, 0, 0, 10), (10, 0, 0, 90)])}


def test_per_image_minimum_on_each_engine_separately() -> None:
    # fgsm hurts image 0 on the source, pgd image 1; on the engine it is the other way round.
    fgsm = _cell("fgsm", 0.1, {
        "pytorch": _eval("pytorch", [(50, 0, 40, 10), (10, 0, 0, 90)]),
        "ort": _eval("ort", [(90, 0, 0, 10), (2, 0, 8, 90)]),
    })  # fmt: skip
    pgd = _cell("pgd", 0.1, {
        "pytorch": _eval("pytorch", [(80, 0, 10, 10), (4, 0, 6, 90)]),
        "ort": _eval("ort", [(30, 0, 60, 10), (9, 0, 1, 90)]),
    })  # fmt: skip
    (wc,) = worst_cases([fgsm, pgd], CLEAN, BINARY)
    assert wc.epsilon == 0.1 and wc.cells == [fgsm.id, pgd.id]
    assert wc.chosen["pytorch"] == [fgsm.id, pgd.id]
    assert wc.chosen["ort"] == [pgd.id, fgsm.id]
    src = wc.engines["pytorch"]
    assert src.per_image.tp == [50, 4] and src.per_image.fn == [40, 6]
    assert src.metrics.tp == 54 and src.metrics.fn == 46
    assert src.metrics.dice == pytest.approx(dice(54, 0, 46))
    expected_mean = (dice(50, 0, 40) + dice(4, 0, 6)) / 2
    assert src.metrics.dice_per_image_mean == pytest.approx(expected_mean)
    # by construction: no member's per-image Dice is lower on any image
    for cell in (fgsm, pgd):
        for name, ev in wc.engines.items():
            member = cell.engines[name].per_image.dice
            assert all(w <= m + 1e-12 for w, m in zip(ev.per_image.dice, member, strict=True))
    # attack success against the clean Dice on that engine (the source's clean run here)
    assert src.attack_success == pytest.approx(1 - src.metrics.dice / 1.0)
    assert wc.engines["ort"].attack_success is None  # no clean run of "ort" given


def test_empty_truth_image_takes_the_member_with_most_false_positives() -> None:
    a = _cell("fgsm", 0.1, {"pytorch": _eval("pytorch", [(5, 0, 5, 90), (0, 3, 0, 97)])})
    b = _cell("pgd", 0.1, {"pytorch": _eval("pytorch", [(6, 0, 4, 90), (0, 9, 0, 91)])})
    (wc,) = worst_cases([a, b], {}, BINARY)
    ev = wc.engines["pytorch"]
    assert wc.chosen["pytorch"] == [a.id, b.id]
    assert ev.per_image.dice == [pytest.approx(dice(5, 0, 5)), None]
    assert ev.metrics.n_empty_truth == 1 and ev.metrics.fp == 9


def test_one_worst_case_per_epsilon_and_failed_cells_left_out() -> None:
    ok = [_cell("fgsm", e, {"pytorch": _eval("pytorch", [(5, 0, 5, 90)])}) for e in (0.2, 0.1)]
    failed = _cell("pgd", 0.1, {})
    failed.status, failed.error = Status.ERROR, "boom"
    out = worst_cases([*ok, failed], {}, BINARY)
    assert [w.epsilon for w in out] == [0.1, 0.2]
    assert out[0].cells == [ok[1].id]
    assert out[0].failed == [failed.id] and out[1].failed == []


def test_l2_cells_are_another_threat_model_and_left_out() -> None:
    linf = _cell("pgd", 0.1, {"pytorch": _eval("pytorch", [(5, 0, 5, 90)])})
    l2 = _cell("pgdl2", 0.1, {"pytorch": _eval("pytorch", [(0, 0, 10, 90)])})
    (wc,) = worst_cases([linf, l2], {}, BINARY)
    assert wc.cells == [linf.id]
    assert wc.engines["pytorch"].per_image.tp == [5]


def test_an_engine_missing_from_one_cell_is_left_out() -> None:
    a = _cell("fgsm", 0.1, {"pytorch": _eval("pytorch", [(5, 0, 5, 90)]),
                            "ort": _eval("ort", [(5, 0, 5, 90)])})  # fmt: skip
    b = _cell("pgd", 0.1, {"pytorch": _eval("pytorch", [(4, 0, 6, 90)])})
    (wc,) = worst_cases([a, b], {}, BINARY)
    assert list(wc.engines) == ["pytorch"]


def test_multiclass_has_no_pooled_dice_but_the_per_image_mean() -> None:
    task = SegmentationTask(kind=TaskKind.MULTICLASS, num_classes=3)
    a = _cell("fgsm", 0.1, {"pytorch": _eval("pytorch", [(5, 0, 5, 90), (8, 1, 1, 90)])})
    b = _cell("pgd", 0.1, {"pytorch": _eval("pytorch", [(7, 0, 3, 90), (2, 1, 7, 90)])})
    (wc,) = worst_cases([a, b], {}, task)
    m = wc.engines["pytorch"].metrics
    assert m.dice is None and m.iou is None
    assert m.dice_per_image_mean == pytest.approx((dice(5, 0, 5) + dice(2, 1, 7)) / 2)


def test_classifier_accuracy_is_the_share_no_member_fooled() -> None:
    task = ClassificationTask(num_classes=2)

    def ev(correct: list[int]) -> EngineEval:
        n = len(correct)
        per = PerImage(dice=[float(c) for c in correct], tp=correct, fp=[1 - c for c in correct],
                       fn=[0] * n, tn=[0] * n)  # fmt: skip
        m = Metrics(accuracy=float(np.mean(correct)), n_images=n, tp=sum(correct),
                    fp=n - sum(correct), activation="softmax", num_classes=2)  # fmt: skip
        return EngineEval("pytorch", metrics=m, per_image=per)

    a = _cell("fgsm", 0.1, {"pytorch": ev([1, 0, 1, 1])})
    b = _cell("pgd", 0.1, {"pytorch": ev([1, 1, 0, 1])})
    clean = {"pytorch": ev([1, 1, 1, 1])}
    (wc,) = worst_cases([a, b], clean, task)
    got = wc.engines["pytorch"]
    assert got.metrics.accuracy == pytest.approx(0.5)
    assert got.attack_success == pytest.approx(0.5)
