"""View parts for medical segmentation audits: the surface distances (HD95, ASD) of Table I
and their notes, and the per-volume table when the audited images are slices of volumes.

HD95 / ASD are stored per evaluation as the mean over the images where they are defined
(``Metrics.hd95``, ``Metrics.asd``, in ``Metrics.surface_unit``); an image whose prediction
misses a ground-truth class entirely has none (``n_surface_undefined``), and the gate reads
the metric as undefined there. Table I shows the stored mean with that count under it.
"""

from __future__ import annotations

from typing import Any

from segshield.reports.format import MISSING, format_float, format_percent, format_points
from segshield.reports.view import Cell, Para, Section, Table, cell, code
from segshield.reports.view_common import (
    cell_header,
    default_loss,
    largest_cells,
    ok_eval,
)
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval, Metrics, Status

__all__ = [
    "MAX_VOLUMES_SHOWN",
    "SURFACE_ROWS",
    "per_volume_sections",
    "surface_cell",
    "surface_note",
    "surface_unit",
]

MAX_VOLUMES_SHOWN = 100  # in dataset order; every volume is in report.json
_UNIT_LABEL = {"pixel": "px", "mm": "mm"}

# Table I rows of the surface distances: label (with the unit), Metrics field.
SURFACE_ROWS: tuple[tuple[str, str], ...] = (("HD95", "hd95"), ("ASD", "asd"))


def _metrics(report: AuditReport) -> list[Metrics]:
    """The metrics of every ok evaluation (clean and finished cells, every engine)."""
    evals = [*report.clean.values()]
    evals += [ev for c in report.cells if c.status == Status.OK for ev in c.engines.values()]
    return [ev.metrics for ev in evals if ev.ok and ev.metrics is not None]


def surface_unit(report: AuditReport) -> str | None:
    """The unit of the report's surface distances as shown ("mm" or "px"); None when no
    evaluation measured them (a classifier, a report written before them)."""
    for m in _metrics(report):
        if m.surface_unit or m.hd95 is not None or m.asd is not None:
            unit = m.surface_unit or "pixel"
            return _UNIT_LABEL.get(unit, unit)
    return None


def surface_cell(ev: EngineEval | None, name: str) -> Cell:
    """The stored mean of surface distance `name` ("hd95" | "asd") of one evaluation; under
    it, how many images it is undefined for (their prediction misses a class)."""
    if ev is not None and not ev.ok:
        return Cell("error", num=True, badge="bad", title=ev.error)
    m = ev.metrics if ev is not None else None
    text = format_float(None if m is None else getattr(m, name, None))
    n = 0 if m is None else m.n_surface_undefined
    if not n:
        return Cell(text, num=True)
    images = "image" if n == 1 else "images"
    title = (
        f"mean over the images where defined; undefined for {n} {images} whose prediction "
        f"misses a class, so a gate rule on {name} fails here"
    )
    return Cell(text, num=True, sub=f"undefined: {n} {images}", title=title)


def surface_note(report: AuditReport) -> Para | None:
    """A note when some evaluation has images without a surface distance; None otherwise."""
    counts = [m.n_surface_undefined for m in _metrics(report)]
    n = max(counts, default=0)
    if not n or surface_unit(report) is None:
        return None
    images = "image" if n == 1 else "images"
    return Para(
        [cell(f"HD95 and ASD are undefined for {n} {images} whose prediction misses a class "
              "(the most in one column; each column's count is under its value); a gate rule "
              "on hd95 fails there. The value shown is the mean over the other images.")],
        note=True,
    )  # fmt: skip


# ----------------------------------------------------------------------------- per volume


def _source_eval(c: AuditCell | None, report: AuditReport) -> EngineEval | None:
    if c is None:
        return ok_eval(report.clean.get(SOURCE_ENGINE))
    return ok_eval(c.engines.get(SOURCE_ENGINE)) if c.status == Status.OK else None


def _volume_dice(ev: EngineEval | None, name: str) -> float | None:
    """Volume `name`'s stored Dice in `ev` (matched by name, not position), else None."""
    pv = ev.per_volume if ev is not None else None
    if pv is None or name not in pv.names:
        return None
    k = pv.names.index(name)
    return pv.dice[k] if k < len(pv.dice) else None


def _attacked(c: AuditCell, before: float | None, after: float | None) -> Cell:
    """An attacked volume Dice with its change from clean (pp) under it."""
    if c.status != Status.OK:
        return Cell("failed", num=True, badge="bad", title=c.error)
    ev = c.engines.get(SOURCE_ENGINE)
    if ev is not None and not ev.ok:
        return Cell("error", num=True, badge="bad", title=ev.error)
    delta = None if before is None or after is None else f"Δ {format_points(after - before)}"
    return Cell(format_percent(after), num=True, sub=delta)


def per_volume_sections(report: AuditReport) -> list[Section]:
    """Volume Dice per volume (patient) on the source engine: clean and under each attack at
    its largest ε, then the mean over volumes; nothing unless the clean run stored
    ``per_volume`` (the audited images are slices of volumes)."""
    clean = _source_eval(None, report)
    pv = clean.per_volume if clean is not None else None
    if pv is None or not pv.names:
        return []
    cells = largest_cells(report, default_loss(report))
    evals = [_source_eval(c, report) for c in cells]
    header = ["Volume", "Slices", "Dice clean", *(f"Dice {cell_header(report, c)}" for c in cells)]
    rows: list[list[Cell]] = []
    for k, name in enumerate(pv.names[:MAX_VOLUMES_SHOWN]):
        before = pv.dice[k] if k < len(pv.dice) else None
        slices = pv.n_slices[k] if k < len(pv.n_slices) else None
        row = [code(name), Cell(MISSING if slices is None else str(slices), num=True)]
        row.append(Cell(format_percent(before), num=True))
        pairs = zip(cells, evals, strict=True)
        row += [_attacked(c, before, _volume_dice(ev, name)) for c, ev in pairs]
        rows.append(row)
    rows.append(_mean_row(clean, cells, evals))
    note = (
        f"On {SOURCE_ENGINE}, each volume's Dice: the confusion counts of its slices summed, "
        "then scored (not a mean of slice Dice); under attack, at each attack's largest ε. "
        f"{MISSING} where a volume has no foreground in truth and prediction. The last row is "
        "the mean over volumes (dice_per_volume_mean)."
    )
    blocks: list[Any] = [Para([cell(note)], note=True)]
    if len(pv.names) > MAX_VOLUMES_SHOWN:
        cap = f"The first {MAX_VOLUMES_SHOWN} of {len(pv.names)} volumes; every volume is in "
        blocks.append(Para([cell(cap + "report.json (per_volume).")], note=True))
    blocks.append(Table(header, rows, cls="per-volume"))
    return [Section("per-volume", "Per volume", blocks)]


def _mean_row(
    clean: EngineEval | None,
    cells: list[AuditCell],
    evals: list[EngineEval | None],
) -> list[Cell]:
    def mean(ev: EngineEval | None) -> float | None:
        return None if ev is None or ev.metrics is None else ev.metrics.dice_per_volume_mean

    before = mean(clean)
    row = [Cell("Mean over volumes", strong=True), Cell("", num=True)]
    row.append(Cell(format_percent(before), num=True, strong=True))
    for c, ev in zip(cells, evals, strict=True):
        out = _attacked(c, before, mean(ev))
        row.append(Cell(out.text, num=True, strong=out.badge is None, sub=out.sub,
                        badge=out.badge, title=out.title))  # fmt: skip
    return row
