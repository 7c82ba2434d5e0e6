"""The engines and engine-transfer sections of the report view: what each engine is and
whether it runs, its clean parity with the source and its latency, as short tables with human
headers and units, every stored field (raw key names, full precision) in folded tables below
them; then each engine against the source on the same adversarial images. Formatted here,
never computed (a speed-up over the source's latency is the one ratio shown)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segshield.reports.format import MISSING, format_float, format_percent, format_points
from segshield.reports.view import Block, Bullets, Cell, Para, Section, Table, cell, code
from segshield.reports.view_common import (
    PRIMARY_LABEL,
    cell_label,
    engines,
    ok_eval,
    ordered,
    plain,
    value,
)
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, Status

__all__ = ["LATENCY_COLUMNS", "PARITY_COLUMNS", "engines_section", "transfer_section"]


def _small(value: Any) -> str:
    """An error size with three significant digits (``1.14e-06``), 0 as ``0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else str(value)
    return "0" if value == 0 else f"{value:.3g}"


# Parity with the source: (header with unit, stored keys tried in order, formatter).
PARITY_COLUMNS: tuple[tuple[str, tuple[str, ...], Callable[[Any], str]], ...] = (
    ("max |Δ logit|", ("logit_max_abs_err",), _small),
    ("max |Δ prob|", ("prob_max_abs_err", "max_abs_diff"), _small),
    ("median |Δ prob|", ("prob_median_abs_err",), _small),
    ("p99 |Δ prob|", ("prob_p99_abs_err",), _small),
    ("mask Dice vs source", ("mask_dice",), plain),
    ("pixels flipped", ("flip_share",), format_percent),
    ("images", ("n_images",), plain),
)
# Latency per engine: (header with unit, stored keys tried in order, formatter).
LATENCY_COLUMNS: tuple[tuple[str, tuple[str, ...], Callable[[Any], str]], ...] = (
    ("batch", ("batch_size", "batch"), plain),
    ("p50 (ms)", ("median_ms", "p50_ms"), format_float),
    ("p99 (ms)", ("p99_ms",), format_float),
    ("throughput (img/s)", ("throughput_ips",), format_float),
)


def _first(data: dict, keys: tuple[str, ...]) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


def _engine_name(name: Any) -> Cell:
    return Cell(str(name), code=True, strong=name == SOURCE_ENGINE)


def _status_badge(status: Any) -> Cell:
    badge = "ok" if status == Status.OK else ("warn" if status == Status.UNAVAILABLE else "bad")
    return Cell(str(status), badge=badge)


def _health_cell(e: Any) -> Cell:
    from segshield.reports.view_health import HEALTH_BADGE, health_of

    status = health_of(e).get("status")
    return cell(None) if status is None else Cell(str(status), badge=HEALTH_BADGE.get(status))


def _overview(report: AuditReport) -> Table:
    header = ["Engine", "Kind", "Precision", "Status", "Health", "Build (s)"]
    rows = [
        [_engine_name(e.name), cell(e.kind), cell(e.precision), _status_badge(e.status),
         _health_cell(e), Cell(format_float(e.build_seconds), num=True)]
        for e in report.engines
    ]  # fmt: skip
    return Table(header, rows, cls="engines")


def _details(report: AuditReport) -> Table:
    """Where each engine comes from: providers, artifact, hash, and why one did not run."""
    rows = []
    for e in report.engines:
        sha = e.sha256
        short = f"{sha[:12]}…" if isinstance(sha, str) and len(sha) > 12 else sha
        rows.append([
            _engine_name(e.name),
            cell(", ".join(e.providers) if e.providers else None),
            cell(e.artifact),
            Cell(short, code=True, title=sha) if short else cell(None),
            cell(e.reason),
        ])  # fmt: skip
    header = ["Engine", "Providers used", "Artifact", "SHA-256", "Reason"]
    return Table(header, rows, title=[cell("Engine details")], cls="engine-details", folded=True)


def _parity_images(report: AuditReport) -> str:
    counts = {(e.parity or {}).get("n_images") for e in report.engines if e.parity}
    counts.discard(None)
    if len(counts) == 1:
        n = counts.pop()
        total = (report.dataset or {}).get("n_images")
        return f"the first {n} audited images" if total and n != total else f"{n} audited images"
    return "a sample of the audited images"


def _fields_table(records: dict[str, dict], title: str, cls: str) -> Table:
    """Every stored field, one row per key (raw names as row labels, never as headers), one
    column per engine: nothing is lost from the short tables above."""
    keys = ordered(k for rec in records.values() for k in rec if k != "engine")
    rows = [[code(k), *(_field(rec.get(k)) for rec in records.values())] for k in keys]
    header = ["Field", *records]
    return Table(header, rows, title=[cell(title)], cls=cls, folded=True)


def _field(v: Any) -> Cell:
    if isinstance(v, list):
        return cell(", ".join(plain(x) for x in v) if v else None)
    return Cell(plain(v), num=_is_number(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parity_blocks(report: AuditReport) -> list[Block]:
    parity = {e.name: e.parity for e in report.engines if isinstance(e.parity, dict) and e.parity}
    if not parity:
        return []
    what = "predicted classes" if report.task == "classification" else "mask pixels"
    note = (
        f"Clean parity against the source {SOURCE_ENGINE} on {_parity_images(report)}: "
        f"largest absolute difference of the logits and of the probabilities, the median "
        f"and 99th percentile of the probability difference, and the share of {what} that "
        "flip. Health on every audited image: see Engine health."
    )
    rows = [
        [
            _engine_name(name),
            *(Cell(fmt(_first(p, keys)), num=True) for _, keys, fmt in PARITY_COLUMNS),
        ]
        for name, p in parity.items()
    ]
    header = ["Engine", *(h for h, _, _ in PARITY_COLUMNS)]
    title = [cell("Parity with the source engine")]
    return [
        Table(header, rows, title=title, cls="parity"),
        Para([cell(note)], note=True),
        _fields_table(parity, "Every parity field", "parity-fields"),
    ]


def _latency_rows(latency: list[dict]) -> list[list[Cell]]:
    p50_keys, batch_keys = LATENCY_COLUMNS[1][1], LATENCY_COLUMNS[0][1]
    base = {  # the source's p50 per batch size: a speed-up compares equal batches
        _first(r, batch_keys): _first(r, p50_keys)
        for r in latency
        if r.get("engine") == SOURCE_ENGINE
    }
    rows = []
    for r in latency:
        p50, ref = _first(r, p50_keys), base.get(_first(r, batch_keys))
        ratio = ref / p50 if _is_number(ref) and _is_number(p50) and p50 > 0 else None
        status = r.get("status")
        rows.append([
            _engine_name(r.get("engine")),
            *(Cell(fmt(_first(r, keys)), num=True) for _, keys, fmt in LATENCY_COLUMNS),
            Cell(MISSING if ratio is None else f"{ratio:.2f}×", num=True),
            cell(None) if status is None else _status_badge(status),
        ])  # fmt: skip
    return rows


def _latency_records(latency: list[dict]) -> dict[str, dict]:
    """The latency rows keyed by engine (and batch size, when an engine has several)."""
    names = [str(r.get("engine")) for r in latency]
    out: dict[str, dict] = {}
    for i, (name, r) in enumerate(zip(names, latency, strict=True)):
        key = name if names.count(name) == 1 else f"{name} · batch {plain(r.get('batch_size'))}"
        out[key if key not in out else f"{key} #{i + 1}"] = r
    return out


def _latency_blocks(report: AuditReport) -> list[Block]:
    latency = report.latency if report.latency is not None else report.provenance.get("latency")
    if not latency:
        return []
    if not (isinstance(latency, list) and all(isinstance(r, dict) for r in latency)):
        return [Para([cell("Latency: "), cell(str(latency))])]
    header = ["Engine", *(h for h, _, _ in LATENCY_COLUMNS), f"speed-up vs {SOURCE_ENGINE}"]
    header.append("Status")
    records = _latency_records(latency)
    note = (
        "Wall time per infer call after a timed warm-up, on the machine in the provenance "
        f"(segshield bench measures longer); speed-up: {SOURCE_ENGINE}'s p50 over the engine's."
    )
    return [
        Table(header, _latency_rows(latency), title=[cell("Latency")], cls="latency"),
        Para([cell(note)], note=True),
        _fields_table(records, "Every latency field", "latency-fields"),
    ]


def engines_section(report: AuditReport) -> Section:
    """Engines, parity and latency tables (few columns, units in the headers), then the
    engines' notes and every stored field, folded."""
    if not report.engines:
        return Section("engines", "Engines", [Para([cell("No engine records.")])])
    blocks: list[Block] = [_overview(report), *_parity_blocks(report), *_latency_blocks(report)]
    blocks.append(_details(report))
    notes = [[code(e.name), cell(f": {n}")] for e in report.engines for n in e.notes or []]
    if notes:
        blocks.append(Bullets(notes, summary=f"Engine notes ({len(notes)})"))
    return Section("engines", "Engines", blocks)


def transfer_section(report: AuditReport) -> Section:
    targets = [e for e in engines(report) if e != SOURCE_ENGINE]
    if not targets:
        para = Para([cell("No engine besides the source was evaluated.")])
        return Section("transfer", "Engine transfer", [para])
    primary = report.primary_metric
    label = PRIMARY_LABEL.get(primary, primary)
    intro = (
        f"The adversarial images are crafted once on {SOURCE_ENGINE} and replayed on every "
        f"engine. Dice gap: the engine's Dice (for a classifier its macro F1; {label} is in the "
        f"tables above) minus {SOURCE_ENGINE}'s on the same inputs, in percentage points; "
        "disagreement: share of predictions that differ from it; transfer "
        "ratio: the engine's attack success over the source's; fooled source only / engine "
        "only: share of images fooled on one side only (quantization can mask or amplify an "
        "attack)."
    )
    largest = {c.id for c in largest_cells_all(report)}
    shown: list[list[Cell]] = []
    rest: list[list[Cell]] = []
    sources = [("clean", "clean", report.clean, True)]
    sources += [
        (cell_label(report, c), c.id, c.engines, c.status == Status.OK) for c in report.cells
    ]
    for where, cid, evals, ok in sources:
        for engine in targets:
            ev = ok_eval(evals.get(engine)) if ok else None
            row = [
                Cell(where, title=cid),
                code(engine),
                Cell(format_percent(value(ev, primary)), num=True),
                Cell(format_points(value(ev, "dice_gap")), num=True),
                Cell(format_percent(value(ev, "disagreement")), num=True),
                Cell(format_float(value(ev, "transfer_ratio")), num=True),
                Cell(format_percent(value(ev, "fooled_source_only")), num=True),
                Cell(format_percent(value(ev, "fooled_engine_only")), num=True),
            ]
            (shown if cid == "clean" or cid in largest else rest).append(row)
    header = ["Inputs", "Engine", label, "Dice gap", "Disagreement", "Transfer ratio"]
    header += ["Fooled source only", "Fooled engine only"]
    blocks: list[Any] = [Para([cell(intro)], note=True), Table(header, shown, cls="transfer")]
    if rest:
        title = [cell(f"Smaller ε ({len(rest) // len(targets)} more cells)")]
        blocks.append(Table(header, rest, title=title, cls="transfer", folded=True))
    return Section("transfer", "Engine transfer", blocks)


def largest_cells_all(report: AuditReport) -> list[AuditCell]:
    """Per attack x loss (in order of appearance), the cell with the largest epsilon."""
    best: dict[tuple[str, str], AuditCell] = {}
    for c in report.cells:
        key = (c.attack, c.loss)
        if key not in best or c.epsilon > best[key].epsilon:
            best[key] = c
    return list(best.values())
