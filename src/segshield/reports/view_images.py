"""The per-image table of a segmentation report: per image, on the source engine, its clean
score, its score under the strongest attack at the largest ε, the change and whether it
was fooled; images without foreground in the ground truth are marked.

The strongest attack per image is the stored worst case's choice (``WorstCase.chosen``)
when the report has one, else the cell with the lowest stored per-image Dice at that ε.
Every value is read from the chosen cell's ``per_image`` record, so a new per-image metric
is one line in :data:`PER_IMAGE_METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segshield.reports.format import MISSING, format_float, format_percent, format_points
from segshield.reports.view import Cell, Para, Section, Table, cell
from segshield.reports.view_common import attack_label, eps_format
from segshield.reports.view_medical import surface_unit
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, PerImage, Status

__all__ = ["MAX_IMAGES_SHOWN", "PER_IMAGE_METRICS", "per_image_sections"]

MAX_IMAGES_SHOWN = 50  # the worst images; every image is in report.json
_DEFAULT_FOOLED = 0.2  # the audit's default fooled_threshold, for reports that lack it


def signed(value: float) -> str:
    """A change of an unbounded value (a distance in pixels or mm): ``+1.25``."""
    return f"{value:+.4g}"


# One line per per-image metric: (label, PerImage field, value format, change format); a
# "{unit}" in the label is the report's surface-distance unit. A metric whose clean list is
# not stored (older reports, classifiers) has no columns.
ImageMetric = tuple[str, str, Callable[[Any], str], Callable[[Any], str]]
PER_IMAGE_METRICS: tuple[ImageMetric, ...] = (
    ("Dice", "dice", format_percent, format_points),
    ("HD95 ({unit})", "hd95", format_float, signed),
)
_SORT_BY = 3  # the rows start worst first: by the first metric's attacked value


def _at(per: PerImage | None, name: str, i: int) -> float | None:
    values = getattr(per, name, None) if per is not None else None
    return values[i] if isinstance(values, list) and i < len(values) else None


def _source(c: AuditCell | None) -> PerImage | None:
    if c is None or c.status != Status.OK:
        return None
    ev = c.engines.get(SOURCE_ENGINE)
    return ev.per_image if ev is not None and ev.ok else None


def _largest(report: AuditReport) -> tuple[float, list[AuditCell], list[str | None] | None]:
    """The largest ε, its finished cells, and the stored worst case's choice per image."""
    evaluation = report.evaluation
    worst = evaluation.worst_case if evaluation is not None else []
    if worst:
        wc = max(worst, key=lambda w: w.epsilon)
        ids = set(wc.cells)
        cells = [c for c in report.cells if c.id in ids and _source(c) is not None]
        return wc.epsilon, cells, wc.chosen.get(SOURCE_ENGINE)
    # as the worst case: L∞ cells only (an L2 cell's budget at the same ε is far larger)
    linf = [c for c in report.cells if _source(c) is not None and _norm(c) == "Linf"]
    eps = max((c.epsilon for c in linf), default=0.0)
    return eps, [c for c in linf if c.epsilon == eps], None


def _norm(c: AuditCell) -> str:
    return str((c.params or {}).get("norm", "Linf"))


def _strongest(cells: list[AuditCell], chosen: list[str | None] | None, i: int) -> AuditCell | None:
    """The stored choice for image `i`, else the cell with its lowest Dice (first on ties)."""
    by_id = {c.id: c for c in cells}
    if chosen is not None and i < len(chosen) and chosen[i] in by_id:
        return by_id[chosen[i]]  # type: ignore[index]
    scored = [(d, k) for k, c in enumerate(cells) if (d := _at(_source(c), "dice", i)) is not None]
    return cells[min(scored)[1]] if scored else (cells[0] if cells else None)


def _fooled(clean: float | None, adv: float | None, threshold: float) -> Cell:
    """The audit's definition: relative Dice drop >= threshold; no verdict where the clean
    Dice is 0 (nothing to degrade) or undefined (empty ground truth)."""
    if clean is None or adv is None or clean <= 0:
        return Cell(MISSING, sort="")
    fooled = (clean - adv) / clean >= threshold
    return Cell("yes" if fooled else "no", badge="bad" if fooled else None, sort=str(int(fooled)))


def _row(
    clean_per: PerImage,
    i: int,
    name: str,
    worst: AuditCell | None,
    fooled_at: float,
    metrics: list[ImageMetric],
) -> list[Cell]:
    adv_per = _source(worst)
    # no foreground in the truth: no true positive and no false negative (so no Dice)
    empty = _at(clean_per, "dice", i) is None and _at(clean_per, "tp", i) == 0
    empty = empty and _at(clean_per, "fn", i) == 0
    row = [Cell(str(i + 1), num=True, sort=str(i)),
           Cell(name, code=True, sub="empty truth" if empty else None, sort=name)]  # fmt: skip
    for _, field, fmt, change in metrics:
        before, after = _at(clean_per, field, i), _at(adv_per, field, i)
        diff = after - before if before is not None and after is not None else None
        row += [
            Cell(fmt(before), num=True, sort=_key(before)),
            Cell(fmt(after), num=True, sort=_key(after)),
            Cell(MISSING if diff is None else change(diff), num=True, sort=_key(diff)),
        ]
    label = MISSING if worst is None else f"{attack_label(worst.attack)} · {worst.loss}"
    row.append(cell(label))
    row.append(_fooled(_at(clean_per, "dice", i), _at(adv_per, "dice", i), fooled_at))
    return row


def _key(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def per_image_sections(report: AuditReport) -> list[Section]:
    """The per-image table (the worst first, capped), or nothing without per-image records."""
    clean = report.clean.get(SOURCE_ENGINE)
    per = clean.per_image if clean is not None and clean.ok else None
    n = len(per.dice) if per is not None else 0
    eps, cells, chosen = _largest(report)
    if per is None or not n or not cells:
        return []
    names = report.dataset.get("names")
    if not (isinstance(names, list) and len(names) == n):
        names = [f"image {i + 1}" for i in range(n)]
    threshold = (report.config or {}).get("fooled_threshold")
    threshold = threshold if isinstance(threshold, (int, float)) else _DEFAULT_FOOLED
    unit = surface_unit(report) or "px"
    metrics: list[ImageMetric] = [
        (label.format(unit=unit), field, fmt, change)
        for label, field, fmt, change in PER_IMAGE_METRICS
        if field == "dice" or getattr(per, field, None) is not None
    ]
    rows = [
        _row(per, i, str(names[i]), _strongest(cells, chosen, i), threshold, metrics)
        for i in range(n)
    ]
    # the worst first; images without a value (empty truth) last
    rows.sort(key=lambda r: (r[_SORT_BY].sort == "", float(r[_SORT_BY].sort or 0.0)))
    fe = eps_format(report)
    header = ["#", "Image"]
    for label, *_ in metrics:
        header += [f"{label} clean", f"{label} attacked", f"Δ {label}"]
    header += ["Strongest attack", "Fooled"]
    note = (
        f"On {SOURCE_ENGINE}, per image: clean, then under the attack (and loss) that hit it "
        f"hardest at the largest ε = {fe(eps)}"
        + (" (the stored worst case)" if chosen is not None else "")
        + f"; fooled: Dice dropped by at least {format_percent(threshold)} of its clean value. "
        "Empty truth: no foreground in the ground truth, so no Dice."
        + (
            f" HD95 in {unit}; {MISSING} where undefined (empty truth, or a prediction that "
            "misses a class)."
            if len(metrics) > 1
            else ""
        )
    )
    sort = Para([cell("Click a column header to sort by it.")], note=True, markdown=False)
    blocks: list[Any] = [Para([cell(note)], note=True), sort]
    if n > MAX_IMAGES_SHOWN:
        cap = f"The {MAX_IMAGES_SHOWN} worst of {n} images; every image is in report.json."
        blocks.append(Para([cell(cap + " (per_image)")], note=True))
    blocks.append(Table(header, rows[:MAX_IMAGES_SHOWN], cls="per-image", sortable=True))
    return [Section("per-image", "Per image", blocks)]
