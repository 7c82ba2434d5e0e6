"""The first screen's matrix and the engine groups every view shares.

Engines whose primary metric (Dice; accuracy for a classifier) reads the same, at the
precision the report shows, on the clean images and on every cell agree: they form one
group, shown as one row, one Table I and one line style ("ort-fp32, aoti-fp32 (agree)").
The matrix is attack rows x ε columns, one row per engine group, each value with its
change against the source engine on the same images. Grouping and the change are the only
arithmetic here; every value is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from segshield.reports.format import MISSING, format_percent, format_points
from segshield.reports.view import Cell, Para, Section, Table, cell, code
from segshield.reports.view_common import (
    PRIMARY_LABEL,
    attack_label,
    default_loss,
    engines,
    eps_format,
    not_run,
    ordered,
)
from segshield.results import (
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    EngineEval,
    Status,
    WorstCase,
)

__all__ = ["EngineGroup", "engine_groups", "matrix_section", "primary_cell"]


@dataclass(frozen=True)
class EngineGroup:
    """Engines that agree; `lead` (the first, the source when it is one) stands for all."""

    members: tuple[str, ...]

    @property
    def lead(self) -> str:
        return self.members[0]

    @property
    def has_source(self) -> bool:
        return SOURCE_ENGINE in self.members

    @property
    def label(self) -> str:
        return ", ".join(self.members) + (" (agree)" if len(self.members) > 1 else "")


def _shown(ev: EngineEval | None, metric: str) -> str:
    """What the report shows for `ev`'s metric: a percent, or why there is none."""
    if ev is None:
        return MISSING
    if not ev.ok:
        return "error"
    return format_percent(ev.value(metric))


def engine_groups(report: AuditReport) -> list[EngineGroup]:
    """The evaluated engines grouped by the primary metric as shown on clean and every cell
    (a failed cell reads the same on all); in engine order, the source's group first."""
    metric = report.primary_metric
    keyed: dict[tuple[str, ...], list[str]] = {}
    for name in engines(report):
        key = (_shown(report.clean.get(name), metric),)
        key += tuple(
            _shown(c.engines.get(name), metric) if c.status == Status.OK else "failed"
            for c in report.cells
        )
        keyed.setdefault(key, []).append(name)
    groups = [EngineGroup(tuple(members)) for members in keyed.values()]
    return sorted(groups, key=lambda g: not g.has_source)


def primary_cell(
    report: AuditReport, ev: EngineEval | None, source: EngineEval | None, metric: str = ""
) -> Cell:
    """The primary metric (or `metric`) of `ev`, with its change against the source's on the
    same inputs (none on the source's own row)."""
    metric = metric or report.primary_metric
    if ev is not None and not ev.ok:
        return Cell("error", num=True, badge="bad", title=ev.error)
    here = None if ev is None else ev.value(metric)
    there = None if source is None or not source.ok else source.value(metric)
    delta = None
    if ev is not source and here is not None and there is not None:
        delta = f"Δ {format_points(here - there)}"
    return Cell(format_percent(here), num=True, sub=delta)


def _rows_of(report: AuditReport) -> list[tuple[str, list[AuditCell]]]:
    """Per attack, its cells at the default loss (else its first loss), by ε; the loss is
    named when it is not the default."""
    loss = default_loss(report)
    out = []
    for attack in ordered(c.attack for c in report.cells):
        losses = ordered(c.loss for c in report.cells if c.attack == attack)
        chosen = loss if loss in losses else losses[0]
        cells = [c for c in report.cells if c.attack == attack and c.loss == chosen]
        label = attack_label(attack) + ("" if chosen == loss else f" · {chosen}")
        out.append((label, sorted(cells, key=lambda c: c.epsilon)))
    return out


def _matrix_rows(report: AuditReport, groups: list[EngineGroup], eps: list[float]) -> list:
    rows = []
    worst = report.evaluation.worst_case if report.evaluation is not None else []
    metric = report.primary_metric
    lines: list[tuple[str, dict[float, AuditCell | WorstCase], str]] = []
    if worst:
        # multi-class worst cases store no pooled Dice: their per-image mean stands in
        pooled = any(ev.value(metric) is not None for w in worst for ev in w.engines.values())
        name = "Worst case" if pooled else "Worst case (per-image mean)"
        lines.append((name, {w.epsilon: w for w in worst}, "" if pooled else "dice_per_image_mean"))
    lines += [(label, {c.epsilon: c for c in cells}, "") for label, cells in _rows_of(report)]
    for label, by_eps, which in lines:
        for k, group in enumerate(groups):
            row = [Cell(label if k == 0 else "", strong=k == 0 and label.startswith("Worst"))]
            row.append(Cell(group.label, code=True, strong=group.has_source))
            source_clean = report.clean.get(SOURCE_ENGINE)
            row.append(primary_cell(report, report.clean.get(group.lead), source_clean, which))
            row += [_at(report, by_eps.get(e), group, which) for e in eps]
            rows.append(row)
    return rows


def _at(
    report: AuditReport, where: AuditCell | WorstCase | None, group: EngineGroup, metric: str
) -> Cell:
    if where is None:
        return Cell(MISSING, num=True)
    if isinstance(where, AuditCell) and where.status != Status.OK:
        return Cell("failed", num=True, badge="bad", title=where.error)
    evals = where.engines
    return primary_cell(report, evals.get(group.lead), evals.get(SOURCE_ENGINE), metric)


def matrix_section(report: AuditReport) -> Section | None:
    """Attack x ε matrix of the primary metric per engine group (first screen); None when
    nothing was attacked."""
    groups = engine_groups(report)
    if not report.cells or not groups:
        return None
    fe = eps_format(report)
    eps = sorted({c.epsilon for c in report.cells})
    label = PRIMARY_LABEL.get(report.primary_metric, report.primary_metric)
    header = ["Attack", "Engines", "Clean", *(f"ε={fe(e)}" for e in eps)]
    table = Table(header, _matrix_rows(report, groups, eps), cls="matrix")
    loss = default_loss(report)
    parts = [
        cell(f"{label} on each engine (pooled over the images); under it the change against "
             f"{SOURCE_ENGINE} on the same images, in percentage points. Attack loss "),
        code(loss),
        cell(" (other losses: Attack losses compared)." if _many_losses(report) else "."),
    ]  # fmt: skip
    rows = table.rows
    if rows and rows[0][0].text.startswith("Worst case"):
        mean = "; the mean over images of their lowest Dice" if "mean" in rows[0][0].text else ""
        parts.append(cell(f" Worst case: per image the strongest L∞ attack at that ε{mean}."))
    notes = [Para(parts, note=True)]
    agree = [g for g in groups if len(g.members) > 1]
    if agree:
        text = "; ".join(f"{', '.join(g.members)} agree" for g in agree)
        notes.append(
            Para([cell(f"One row per group of engines whose {label} reads the same on every "
                       f"cell at the precision shown: {text}.")], note=True)
        )  # fmt: skip
    skipped = sorted(not_run(report))
    if skipped:
        notes.append(Para([cell(f"Not run: {', '.join(skipped)} (see Engines).")], note=True))
    title = f"{label}: engine × attack × ε"
    return Section("matrix", title, [table, *notes])


def _many_losses(report: AuditReport) -> bool:
    return len({c.loss for c in report.cells}) > 1
