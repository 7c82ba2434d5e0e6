"""CSV rendering: one parseable row per (clean or cell) x engine, values as stored."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from segshield.reports.csvfile import CSV_COLUMNS, render_csv
from segshield.results import GATE_METRICS, AuditCell, AuditReport, EngineEval, Status

DATA = Path(__file__).parent / "data"


def load(name: str) -> AuditReport:
    return AuditReport.from_dict(json.loads((DATA / f"report_{name}.json").read_text()))


def parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_header_and_row_count() -> None:
    header, rows = parse(render_csv(load("pass")))
    assert header == list(CSV_COLUMNS)
    assert len(set(header)) == len(header)
    for key in GATE_METRICS:  # every gateable metric, under its gate name
        assert key in header
    report = load("pass")
    n_engines = len(report.clean)
    assert len(rows) == n_engines + sum(len(c.engines) for c in report.cells)


def test_values_round_trip_exactly() -> None:
    report = load("pass")
    _, rows = parse(render_csv(report))
    by_key = {(r["cell_id"], r["engine"]): r for r in rows}
    cell = report.cells[-1]
    ev = cell.engines["ort-fp32"]
    row = by_key[(cell.id, "ort-fp32")]
    assert (row["attack"], row["attack_loss"]) == (cell.attack, cell.loss)
    assert float(row["loss"]) == ev.metrics.loss  # the metric, not the attack's loss
    assert float(row["epsilon"]) == cell.epsilon
    assert float(row["dice"]) == ev.metrics.dice
    assert float(row["attack_success"]) == ev.attack_success
    assert float(row["dice_gap"]) == ev.dice_gap
    assert float(row["dice_ci_low"]) == ev.ci["dice"].low
    assert float(row["dice_ci_high"]) == ev.ci["dice"].high
    assert float(row["ssim_mean"]) == cell.perturbation.ssim_mean
    assert float(row["linf_max"]) == cell.perturbation.linf_max
    assert float(row["l2_mean"]) == cell.perturbation.l2_mean
    clean = by_key[("clean", "pytorch")]
    assert clean["attack"] == "clean" and float(clean["epsilon"]) == 0.0
    assert clean["attack_success"] == "" and clean["ssim_mean"] == ""
    assert float(clean["dice"]) == report.clean["pytorch"].metrics.dice


def test_failures_keep_their_rows_and_errors() -> None:
    report = load("fail")
    _, rows = parse(render_csv(report))
    bad = next(c for c in report.cells if c.status != Status.OK)
    # the failed cell ran on no engine: one row
    assert len(rows) == len(report.clean) + sum(len(c.engines) or 1 for c in report.cells)
    failed = [r for r in rows if r["cell_id"] == bad.id]
    assert len(failed) == 1
    assert failed[0]["status"] == "error" and failed[0]["engine"] == ""
    assert failed[0]["error"] == bad.error  # quotes and markup survive
    fgsm = next(
        r for r in rows if r["cell_id"] == "fgsm/bce/0.0313725" and r["engine"] == "ort-int8"
    )
    assert fgsm["status"] == "error" and "bad input" in fgsm["error"] and fgsm["dice"] == ""


def test_missing_values_are_empty_and_newlines_quoted() -> None:
    report = AuditReport(provenance={}, config={}, model={}, dataset={})
    assert render_csv(report) == ",".join(CSV_COLUMNS) + "\n"
    report.cells.append(
        AuditCell(
            id="pgd/bce/0.01",
            attack="pgd",
            loss="bce",
            epsilon=0.01,
            engines={"pytorch": EngineEval("pytorch", status="error", error="line 1\nline, 2")},
        )
    )
    _, rows = parse(render_csv(report))
    assert len(rows) == 1
    assert rows[0]["error"] == "line 1\nline, 2"
    assert rows[0]["dice"] == "" and rows[0]["dice_ci_low"] == ""
