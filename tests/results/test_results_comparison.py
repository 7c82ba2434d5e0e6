"""compare_reports on hand-built reports: matching, changes, Dice significance, what is in
one report only, latency, and the JSON round trip; and the renderers of the comparison."""

from __future__ import annotations

import json

import pytest

from segshield.enums import Status
from segshield.reports.comparison import (
    DROP,
    RISE,
    headline,
    render_comparison_html,
    render_comparison_markdown,
)
from segshield.results import (
    AuditCell,
    AuditReport,
    EngineEval,
    Evaluation,
    Interval,
    Metrics,
    WorstCase,
)
from segshield.results.comparison import (
    COMPARISON_KIND,
    ReleaseComparison,
    Slot,
    compare_reports,
)

E2, E8 = 2 / 255, 8 / 255


def _ev(
    engine: str, dice: float, ci: tuple[float, float] | None = None, as_: float | None = None
) -> EngineEval:
    return EngineEval(
        engine,
        metrics=Metrics(dice=dice, dice_per_image_mean=dice - 0.01, n_images=4),
        ci=None if ci is None else {"dice": Interval(*ci)},
        attack_success=as_,
    )


def _cell(attack: str, eps: float, **engines: EngineEval) -> AuditCell:
    return AuditCell(AuditCell.make_id(attack, "ce", eps), attack, "ce", eps, engines=engines)


def _report(
    name: str = "unet",
    cells: list[AuditCell] | None = None,
    clean: dict[str, EngineEval] | None = None,
    worst: list[WorstCase] | None = None,
    latency: list[dict] | None = None,
    data: str = "d" * 64,
) -> AuditReport:
    return AuditReport(
        provenance={"weights_sha256": "w" * 64, "data_sha256": data, "started_at": "T0"},
        config={},
        model={"name": name},
        dataset={},
        clean=clean if clean is not None else {"pytorch": _ev("pytorch", 0.8, (0.75, 0.85))},
        cells=cells or [],
        evaluation=None if worst is None else Evaluation(worst_case=worst),
        latency=latency,
    )


def _row(cmp: ReleaseComparison, uid: str, engine: str = "pytorch"):
    return next(r for r in cmp.rows if r.id == uid and r.engine == engine)


def test_rows_are_matched_by_id_and_engine_with_changes() -> None:
    base = _report(cells=[_cell("pgd", E8, pytorch=_ev("pytorch", 0.5, (0.4, 0.6), 0.3))])
    new = _report(cells=[_cell("pgd", E8, pytorch=_ev("pytorch", 0.45, (0.35, 0.55), 0.4))])
    cmp = compare_reports(base, new)
    assert [(r.id, r.engine, r.kind) for r in cmp.rows] == [
        ("clean", "pytorch", "clean"),
        ("pgd/ce/0.0313725", "pytorch", "cell"),
    ]
    row = _row(cmp, "pgd/ce/0.0313725")
    assert row.metrics["dice"].base == 0.5 and row.metrics["dice"].new == 0.45
    assert row.change("dice") == pytest.approx(-0.05)
    assert row.change("attack_success") == pytest.approx(0.1)
    assert row.change("dice_per_image_mean") == pytest.approx(-0.05)
    assert (row.attack, row.loss, row.epsilon) == ("pgd", "ce", E8)
    assert not row.significant and not row.regression  # the intervals overlap
    assert _row(cmp, "clean").change("dice") == 0.0 and "attack_success" not in (
        _row(cmp, "clean").metrics
    )  # absent on both sides: not a row value
    assert cmp.summary.rows == 2 and cmp.summary.regressions == 0
    assert (cmp.base.model, cmp.base.started_at, cmp.base.data_sha256) == ("unet", "T0", "d" * 64)


@pytest.mark.parametrize(
    ("base_ci", "new_ci", "regression", "improvement"),
    [
        ((0.40, 0.60), (0.20, 0.39), True, False),  # apart, below: a drop
        ((0.40, 0.60), (0.61, 0.70), False, True),  # apart, above: a rise
        ((0.40, 0.60), (0.20, 0.40), False, False),  # touching end points overlap
        ((0.40, 0.60), (0.30, 0.50), False, False),  # overlapping
        ((0.40, 0.60), (None, None), False, False),  # an undefined interval
    ],
)
def test_dice_significance_is_intervals_apart(base_ci, new_ci, regression, improvement) -> None:
    mid = lambda ci: 0.5 if ci[0] is None else sum(ci) / 2  # noqa: E731
    base = _report(cells=[_cell("fgsm", E2, pytorch=_ev("pytorch", mid(base_ci), base_ci))])
    new = _report(cells=[_cell("fgsm", E2, pytorch=_ev("pytorch", mid(new_ci), new_ci))])
    cmp = compare_reports(base, new)
    row = _row(cmp, "fgsm/ce/0.00784314")
    assert (row.regression, row.improvement) == (regression, improvement)
    assert row.significant == (regression or improvement)
    assert cmp.summary.regressions == int(regression)
    assert cmp.summary.improvements == int(improvement)
    assert cmp.regressed == regression
    assert cmp.summary.without_ci == (1 if new_ci[0] is None else 0)


def test_a_row_without_an_interval_is_never_significant() -> None:
    base = _report(cells=[_cell("pgd", E8, pytorch=_ev("pytorch", 0.9))])
    new = _report(cells=[_cell("pgd", E8, pytorch=_ev("pytorch", 0.1, (0.05, 0.15)))])
    row = _row(compare_reports(base, new), "pgd/ce/0.0313725")
    assert row.change("dice") == pytest.approx(-0.8) and not row.significant
    assert row.base_dice_ci is None and row.new_dice_ci == [0.05, 0.15]


def test_what_is_in_one_report_only_is_listed_on_each_side() -> None:
    ev = lambda e: _ev(e, 0.5, (0.4, 0.6))  # noqa: E731
    base = _report(
        cells=[_cell("fgsm", E2, pytorch=ev("pytorch"), ort=ev("ort")), _cell("pgd", E2)],
        worst=[WorstCase(E2, engines={"pytorch": ev("pytorch")}), WorstCase(E8)],
        clean={"pytorch": ev("pytorch"), "ort": ev("ort")},
    )
    new = _report(
        cells=[_cell("fgsm", E2, pytorch=ev("pytorch"), trt=ev("trt")), _cell("sea", E8)],
        worst=[WorstCase(E2, engines={"pytorch": ev("pytorch"), "trt": ev("trt")})],
    )
    m = compare_reports(base, new).missing
    assert m.cells_only_in_base == ["pgd/ce/0.00784314"]
    assert m.cells_only_in_new == ["sea/ce/0.0313725"]
    assert m.worst_cases_only_in_base == ["worst_case/*/0.0313725"] and not (
        m.worst_cases_only_in_new
    )
    assert m.engines_only_in_base == [Slot("clean", "ort"), Slot("fgsm/ce/0.00784314", "ort")]
    assert m.engines_only_in_new == [
        Slot("fgsm/ce/0.00784314", "trt"),
        Slot("worst_case/*/0.00784314", "trt"),
    ]
    cmp = compare_reports(base, new)
    assert cmp.summary.only_in_one == 3 and cmp.summary.engines_only_in_one == 4
    assert _row(cmp, "worst_case/*/0.00784314").kind == "worst_case"
    # an older report without the evaluation section: its worst cases are in the other only
    m = compare_reports(_report(), new).missing
    assert m.worst_cases_only_in_new == ["worst_case/*/0.00784314"]
    assert compare_reports(new, _report()).missing.worst_cases_only_in_base == (
        ["worst_case/*/0.00784314"]
    )


def test_failed_cells_and_engines_are_compared_without_values() -> None:
    failed = _cell("pgd", E8, pytorch=EngineEval("pytorch", Status.ERROR, "boom"))
    failed.status = Status.ERROR
    base = _report(cells=[_cell("pgd", E8, pytorch=_ev("pytorch", 0.5, (0.4, 0.6)))])
    cmp = compare_reports(base, _report(cells=[failed]))
    row = _row(cmp, "pgd/ce/0.0313725")
    assert (row.base_status, row.new_status) == ("ok", "error")
    assert row.metrics["dice"].new is None and row.change("dice") is None
    assert not row.significant and cmp.missing.failed_in_new == ["pgd/ce/0.0313725"]


def test_latency_is_matched_by_engine_and_batch_size() -> None:
    base = _report(
        latency=[
            {"engine": "pytorch", "batch_size": 1, "median_ms": 10.0},
            {"engine": "ort", "batch_size": 1, "median_ms": 5.0},
        ]
    )
    new = _report(
        latency=[
            {"engine": "pytorch", "batch_size": 1, "median_ms": 12.5},
            {"engine": "pytorch", "batch_size": 8, "median_ms": 40.0},
        ]
    )
    cmp = compare_reports(base, new)
    assert [(x.engine, x.batch_size, x.change_ms) for x in cmp.latency] == [("pytorch", 1, 2.5)]
    assert cmp.missing.latency_only_in_base == ["ort@1"]
    assert cmp.missing.latency_only_in_new == ["pytorch@8"]
    assert compare_reports(_report(), _report()).latency == []


def test_notes_say_what_makes_reports_less_comparable() -> None:
    cmp = compare_reports(_report(), _report(data="e" * 64))
    assert any("different data" in n for n in cmp.notes)
    assert compare_reports(_report(), _report()).notes == []


def test_json_round_trip() -> None:
    base = _report(
        cells=[_cell("fgsm", E2, pytorch=_ev("pytorch", 0.5, (0.4, 0.6), 0.2))],
        worst=[WorstCase(E2, engines={"pytorch": _ev("pytorch", 0.5, (0.4, 0.6))})],
        latency=[{"engine": "pytorch", "batch_size": 1, "median_ms": 1.0}],
    )
    new = _report(
        name="unet-v2",
        cells=[_cell("fgsm", E2, pytorch=_ev("pytorch", 0.2, (0.1, 0.3), 0.6)), _cell("x", E8)],
        latency=[{"engine": "pytorch", "batch_size": 1, "median_ms": float("nan")}],
    )
    cmp = compare_reports(base, new)
    raw = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert raw["schema_version"] == 1 and raw["kind"] == COMPARISON_KIND
    assert raw["summary"]["regressions"] == 1
    back = ReleaseComparison.from_dict(raw)
    assert back == cmp
    with pytest.raises(ValueError, match="not a segshield comparison"):
        ReleaseComparison.from_dict({"kind": "segshield.audit"})


def test_markdown_and_html_render_the_comparison_escaped() -> None:
    base = _report(
        name="<b>unet|v1</b>",
        cells=[
            _cell("fgsm", E2, pytorch=_ev("pytorch", 0.5, (0.45, 0.55))),
            _cell("pgd", E8, pytorch=_ev("pytorch", 0.3, (0.25, 0.35))),
        ],
        latency=[{"engine": "pytorch", "batch_size": 1, "median_ms": 10.0}],
    )
    new = _report(
        cells=[
            _cell("fgsm", E2, pytorch=_ev("pytorch", 0.3, (0.25, 0.35))),
            _cell("pgd", E8, pytorch=_ev("pytorch", 0.5, (0.45, 0.55))),
            _cell("sea", E8),
        ],
        latency=[{"engine": "pytorch", "batch_size": 1, "median_ms": 12.0}],
    )
    cmp = compare_reports(base, new)
    assert headline(cmp) == "1 significant Dice drop, 1 improvement, 1 cell only in one report"
    md = render_comparison_markdown(cmp)
    assert md.splitlines()[0] == f"**segshield compare: {headline(cmp)}**"
    rows = [line for line in md.splitlines() if line.startswith("| fgsm") or "| pgd" in line]
    assert rows[0].startswith("| fgsm/ce | pytorch | 2/255 | 50.00% | 30.00% | -20.00 pp")
    assert DROP in rows[0] and RISE in rows[1]  # sorted by change: the drop first
    assert "Cells only in new: sea/ce/0.0313725" in md
    assert "| pytorch | 1 | 10 | 12 | +2 |" in md
    assert "&lt;b&gt;unet\\|v1&lt;/b&gt;" in md and "<b>" not in md
    html = render_comparison_html(cmp)
    assert html.startswith("<!DOCTYPE html>") and "<b>unet" not in html
    assert "&lt;b&gt;unet|v1&lt;/b&gt;" in html and 'class="drop"' in html
    assert "Content-Security-Policy" in html and "<script" not in html
