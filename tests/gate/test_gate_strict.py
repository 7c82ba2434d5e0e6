"""`strict_problems`: failed cells, failed engine builds and failed engine health are listed,
one line each; engines unavailable on this machine are not failures."""

from __future__ import annotations

from segshield.engines.records import EngineRecord
from segshield.gate.strict import strict_problems
from segshield.results import AuditCell, AuditReport, EngineEval, Status


def _report(engines: list[EngineRecord], cells: list[AuditCell] | None = None, clean=None):
    return AuditReport(
        provenance={"seconds": 1.0},
        config={},
        model={"name": "m"},
        dataset={"source": "s"},
        engines=engines,
        clean=clean or {},
        cells=cells or [],
    )


def _cell(status: Status = Status.OK, error: str | None = None, engines=None) -> AuditCell:
    return AuditCell(
        id="pgd/bce/0.0313725",
        attack="pgd",
        loss="bce",
        epsilon=8 / 255,
        status=status,
        error=error,
        engines=engines or {},
    )


def test_a_complete_audit_has_no_problems() -> None:
    healthy = EngineRecord("ort-fp32", "onnxruntime", health={"status": "ok", "mask_dice": 1.0})
    report = _report([EngineRecord("pytorch", "pytorch"), healthy], [_cell()])
    assert strict_problems(report) == []


def test_unavailable_engines_are_not_problems() -> None:
    gpu = EngineRecord(
        "ort-cuda", "onnxruntime", status=Status.UNAVAILABLE, reason="no CUDA provider"
    )
    assert strict_problems(_report([EngineRecord("pytorch", "pytorch"), gpu])) == []


def test_failed_cell_build_and_health_each_give_one_line() -> None:
    engines = [
        EngineRecord("pytorch", "pytorch", health=None),
        EngineRecord("ort-fp32", "onnxruntime", status="error", reason="export failed\ndetail"),
        EngineRecord(
            "ort-int8",
            "onnxruntime",
            health={"status": "failed", "mask_dice": 0.41, "reason": "masks collapsed"},
        ),
        EngineRecord("ort-fp16", "onnxruntime", health={"status": "degraded", "mask_dice": 0.9}),
    ]
    cells = [_cell(Status.ERROR, "RuntimeError: out of memory\nmore")]
    problems = strict_problems(_report(engines, cells))
    assert problems == [
        "engine ort-fp32 failed to build: export failed",
        "engine ort-int8 health is failed: masks collapsed",
        "cell pgd/bce/0.0313725 failed: RuntimeError: out of memory",
    ]
    assert all("\n" not in p for p in problems)


def test_failed_engine_evaluations_are_listed_unless_the_engine_is_already() -> None:
    engines = [EngineRecord("pytorch", "pytorch"), EngineRecord("ort-fp32", "onnxruntime")]
    bad = EngineEval(engine="ort-fp32", status=Status.ERROR, error="shape mismatch")
    report = _report(engines, [_cell(engines={"ort-fp32": bad})], clean={"ort-fp32": bad})
    assert strict_problems(report) == [
        "engine ort-fp32 failed on the clean images: shape mismatch",
        "cell pgd/bce/0.0313725 failed on engine ort-fp32: shape mismatch",
    ]


def test_health_is_read_defensively() -> None:
    class Health:
        status = "FAILED"
        reason = None

    odd = [
        EngineRecord("a", "onnxruntime", health={}),  # no status yet
        EngineRecord("b", "onnxruntime", health="failed"),  # a bare string
        EngineRecord("c", "onnxruntime", health=Health()),  # an object
    ]
    assert strict_problems(_report(odd)) == [
        "engine b health is failed: no reason recorded",
        "engine c health is failed: no reason recorded",
    ]
