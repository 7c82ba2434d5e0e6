"""A release comparison: two audit reports (base = the last release, new = this one) matched
row by row, so CI can ask "is this release less robust than the last one?".

Rows are matched by (id, engine): ``clean`` (the clean evaluation), every cell id
(``attack/loss/ε``) and every worst-case id (``worst_case/*/ε``). Each row holds, for ``dice``,
``attack_success`` and ``dice_per_image_mean``, the base and new values and the change
new − base. A Dice change is *significant* when both reports carry a Dice bootstrap interval
for the row (``EngineEval.ci["dice"]`` with finite low and high) and the two intervals do not
overlap: ``new.high < base.low`` (a significant drop, a *regression*) or ``new.low > base.high``
(an *improvement*). Intervals that touch (an equal end point) overlap; a row without both
intervals is never significant. Whatever is in one report only (cells, engines of a cell,
worst cases, latency rows) is listed in :class:`Missing`, never dropped silently.
Pure functions over typed results: no I/O, no printing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from segshield.enums import Status, TaskKind
from segshield.results.evaluation import WORST_CASE
from segshield.results.types import (
    CLEAN,
    AuditReport,
    EngineEval,
    Interval,
    clean_json,
    from_fields,
)

COMPARISON_SCHEMA_VERSION = 1
COMPARISON_KIND = "segshield.comparison"
COMPARED_METRICS = ("dice", "attack_success", "dice_per_image_mean")
"""The values compared on every row (where either report has them)."""
ROW_KINDS = ("clean", "cell", WORST_CASE)


@dataclass
class ReportRef:
    """Which audit one side of the comparison is: model, hashes and start time."""

    model: str | None = None
    weights_sha256: str | None = None
    data_sha256: str | None = None
    started_at: str | None = None
    segshield: str | None = None
    task: str | None = None
    n_images: int | None = None


@dataclass
class Change:
    """One value in both reports and its change (new − base; None when either is missing)."""

    base: float | None = None
    new: float | None = None
    change: float | None = None


@dataclass
class ComparisonRow:
    """One (id, engine) present in both reports. kind: clean, cell or worst_case; status: the
    engine evaluation's status on each side; dice_ci: [low, high] of each side's interval (None
    when absent); significant / regression / improvement: see the module docstring."""

    id: str
    engine: str
    kind: str
    attack: str | None = None
    loss: str | None = None
    epsilon: float | None = None
    base_status: str = Status.OK.value
    new_status: str = Status.OK.value
    metrics: dict[str, Change] = field(default_factory=dict)
    base_dice_ci: list[float] | None = None
    new_dice_ci: list[float] | None = None
    significant: bool = False
    regression: bool = False
    improvement: bool = False

    def change(self, name: str) -> float | None:
        entry = self.metrics.get(name)
        return None if entry is None else entry.change


@dataclass
class LatencyChange:
    """The median latency of one engine at one batch size in both reports (ms)."""

    engine: str
    batch_size: int
    base_ms: float | None = None
    new_ms: float | None = None
    change_ms: float | None = None


@dataclass
class Slot:
    """One engine of one row id (a cell, clean or a worst case)."""

    id: str
    engine: str


@dataclass
class Missing:
    """What one report has and the other lacks. A cell or worst case only in one report is
    listed by id (its engines are not listed again); an engine of a row present in both is
    listed as a Slot. failed_*: cells whose status is not ok (their engines, if any, are still
    compared). latency_only_*: ``engine@batch_size``."""

    cells_only_in_base: list[str] = field(default_factory=list)
    cells_only_in_new: list[str] = field(default_factory=list)
    worst_cases_only_in_base: list[str] = field(default_factory=list)
    worst_cases_only_in_new: list[str] = field(default_factory=list)
    engines_only_in_base: list[Slot] = field(default_factory=list)
    engines_only_in_new: list[Slot] = field(default_factory=list)
    failed_in_base: list[str] = field(default_factory=list)
    failed_in_new: list[str] = field(default_factory=list)
    latency_only_in_base: list[str] = field(default_factory=list)
    latency_only_in_new: list[str] = field(default_factory=list)

    @property
    def ids_only_in_one(self) -> int:
        """Cells and worst cases in one report only."""
        return sum(
            len(x)
            for x in (
                self.cells_only_in_base,
                self.cells_only_in_new,
                self.worst_cases_only_in_base,
                self.worst_cases_only_in_new,
            )
        )


@dataclass
class ComparisonSummary:
    """Counts: matched rows, significant Dice drops (regressions) and rises (improvements),
    rows without both Dice intervals, ids (cells, worst cases) and engines in one report."""

    rows: int = 0
    regressions: int = 0
    improvements: int = 0
    without_ci: int = 0
    only_in_one: int = 0
    engines_only_in_one: int = 0


@dataclass
class ReleaseComparison:
    """The comparison of two audit reports; JSON via :meth:`to_dict` / :meth:`from_dict`.
    notes: sentences on what makes the two less comparable (other data, task, image count)."""

    base: ReportRef
    new: ReportRef
    rows: list[ComparisonRow] = field(default_factory=list)
    latency: list[LatencyChange] = field(default_factory=list)
    missing: Missing = field(default_factory=Missing)
    summary: ComparisonSummary = field(default_factory=ComparisonSummary)
    notes: list[str] = field(default_factory=list)
    schema_version: int = COMPARISON_SCHEMA_VERSION
    kind: str = COMPARISON_KIND

    @property
    def regressed(self) -> bool:
        return self.summary.regressions > 0

    def to_dict(self) -> dict[str, Any]:
        return clean_json(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReleaseComparison:
        if raw.get("kind") != COMPARISON_KIND:
            raise ValueError(f"not a segshield comparison (kind {raw.get('kind')!r})")
        rows = []
        for r in raw.get("rows") or []:
            row = from_fields(ComparisonRow, r)
            row.metrics = {k: from_fields(Change, v) for k, v in (r.get("metrics") or {}).items()}
            rows.append(row)
        missing = from_fields(Missing, raw.get("missing") or {})
        for name in ("engines_only_in_base", "engines_only_in_new"):
            setattr(missing, name, [from_fields(Slot, s) for s in getattr(missing, name)])
        return cls(
            base=from_fields(ReportRef, raw.get("base") or {}),
            new=from_fields(ReportRef, raw.get("new") or {}),
            rows=rows,
            latency=[from_fields(LatencyChange, x) for x in raw.get("latency") or []],
            missing=missing,
            summary=from_fields(ComparisonSummary, raw.get("summary") or {}),
            notes=list(raw.get("notes") or []),
            schema_version=int(raw.get("schema_version", COMPARISON_SCHEMA_VERSION)),
        )


# One comparable unit of a report: kind, attack, loss, epsilon and its engines.
_Unit = tuple[str, str | None, str | None, float | None, dict[str, EngineEval]]


def _units(report: AuditReport) -> dict[str, _Unit]:
    units: dict[str, _Unit] = {CLEAN: ("clean", None, None, None, report.clean)}
    for cell in report.cells:
        units[cell.id] = ("cell", cell.attack, cell.loss, cell.epsilon, cell.engines)
    for wc in report.evaluation.worst_case if report.evaluation else []:
        units[wc.id] = (WORST_CASE, WORST_CASE, "*", wc.epsilon, wc.engines)
    return units


def _interval(ev: EngineEval) -> list[float] | None:
    ci: Interval | None = (ev.ci or {}).get("dice")
    low, high = (None, None) if ci is None else (_finite(ci.low), _finite(ci.high))
    return None if low is None or high is None else [low, high]


def _finite(value: Any) -> float | None:
    """A finite float, or None (missing, NaN, infinite, not a number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _difference(base: float | None, new: float | None) -> float | None:
    return None if base is None or new is None else new - base


def compare_row(uid: str, unit: _Unit, base: EngineEval, new: EngineEval) -> ComparisonRow:
    """One matched (id, engine): values, changes and the Dice significance."""
    kind, attack, loss, epsilon, _ = unit
    row = ComparisonRow(uid, base.engine or new.engine, kind, attack, loss, epsilon)
    row.base_status, row.new_status = Status(base.status).value, Status(new.status).value
    for name in COMPARED_METRICS:
        b = _finite(base.value(name)) if base.ok else None
        n = _finite(new.value(name)) if new.ok else None
        if b is not None or n is not None:
            row.metrics[name] = Change(b, n, _difference(b, n))
    row.base_dice_ci = _interval(base) if base.ok else None
    row.new_dice_ci = _interval(new) if new.ok else None
    if row.base_dice_ci is not None and row.new_dice_ci is not None:
        (b_low, b_high), (n_low, n_high) = row.base_dice_ci, row.new_dice_ci
        row.regression = n_high < b_low
        row.improvement = n_low > b_high
        row.significant = row.regression or row.improvement
    return row


def _latency(base: AuditReport, new: AuditReport, missing: Missing) -> list[LatencyChange]:
    def index(report: AuditReport) -> dict[tuple[str, int], float | None]:
        out: dict[tuple[str, int], float | None] = {}
        for r in report.latency or []:
            if r.get("engine") is None or r.get("batch_size") is None:
                continue
            out[(str(r["engine"]), int(r["batch_size"]))] = _finite(r.get("median_ms"))
        return out

    b, n = index(base), index(new)
    rows = []
    for key in [*b, *(k for k in n if k not in b)]:
        if key not in n:
            missing.latency_only_in_base.append(f"{key[0]}@{key[1]}")
        elif key not in b:
            missing.latency_only_in_new.append(f"{key[0]}@{key[1]}")
        else:
            rows.append(LatencyChange(*key, b[key], n[key], _difference(b[key], n[key])))
    return rows


def report_ref(report: AuditReport) -> ReportRef:
    """Which audit a report is, from its model and provenance sections."""
    prov, model = report.provenance or {}, report.model or {}
    clean = next((ev for ev in report.clean.values() if ev.metrics is not None), None)
    n_images = clean.metrics.n_images if clean is not None and clean.metrics else None
    return ReportRef(
        model=model.get("name") or model.get("class") or model.get("source"),
        weights_sha256=prov.get("weights_sha256") or model.get("weights_sha256"),
        data_sha256=prov.get("data_sha256"),
        started_at=prov.get("started_at"),
        segshield=prov.get("segshield"),
        task=TaskKind(report.task).value,
        n_images=n_images,
    )


def _notes(base: ReportRef, new: ReportRef) -> list[str]:
    notes = []
    if base.task != new.task:
        notes.append(f"the reports are of different tasks ({base.task} vs {new.task})")
    if base.data_sha256 and new.data_sha256 and base.data_sha256 != new.data_sha256:
        notes.append("the reports were measured on different data (data sha256 differs)")
    if base.n_images != new.n_images:
        notes.append(f"the reports measured {base.n_images} vs {new.n_images} images")
    return notes


def _failed(report: AuditReport) -> list[str]:
    return [c.id for c in report.cells if Status(c.status) != Status.OK]


def compare_reports(base: AuditReport, new: AuditReport) -> ReleaseComparison:
    """Match two reports row by row (see the module docstring); computes, prints nothing."""
    b_units, n_units = _units(base), _units(new)
    missing = Missing(failed_in_base=_failed(base), failed_in_new=_failed(new))
    rows: list[ComparisonRow] = []
    for uid, unit in b_units.items():
        if uid not in n_units:
            wc = unit[0] == WORST_CASE
            (missing.worst_cases_only_in_base if wc else missing.cells_only_in_base).append(uid)
            continue
        b_eng, n_eng = unit[4], n_units[uid][4]
        for engine in [*b_eng, *(e for e in n_eng if e not in b_eng)]:
            if engine not in n_eng:
                missing.engines_only_in_base.append(Slot(uid, engine))
            elif engine not in b_eng:
                missing.engines_only_in_new.append(Slot(uid, engine))
            else:
                rows.append(compare_row(uid, unit, b_eng[engine], n_eng[engine]))
    for uid, unit in n_units.items():
        if uid not in b_units:
            wc = unit[0] == WORST_CASE
            (missing.worst_cases_only_in_new if wc else missing.cells_only_in_new).append(uid)
    latency = _latency(base, new, missing)
    summary = ComparisonSummary(
        rows=len(rows),
        regressions=sum(r.regression for r in rows),
        improvements=sum(r.improvement for r in rows),
        without_ci=sum(r.base_dice_ci is None or r.new_dice_ci is None for r in rows),
        only_in_one=missing.ids_only_in_one,
        engines_only_in_one=len(missing.engines_only_in_base) + len(missing.engines_only_in_new),
    )
    b_ref, n_ref = report_ref(base), report_ref(new)
    return ReleaseComparison(b_ref, n_ref, rows, latency, missing, summary, _notes(b_ref, n_ref))
