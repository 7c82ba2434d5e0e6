"""The ε curves of a segmentation report: Dice, HD95 (when measured), IoU, attack success,
SSIM and pixel error against ε, and one folded table of the plotted values per attack and loss.

Lines are bounded: one colour per attack (x loss), one line style and marker per engine
group (:func:`segshield.reports.view_overview.engine_groups`; engines that agree are drawn
once), so a legend has at most #attacks + #groups entries, whatever the engine count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segshield.reports.format import MISSING, format_percent
from segshield.reports.svg import DASHES, MARKERS, PALETTE, Series
from segshield.reports.view import Cell, Chart, Para, Section, Table, cell, code
from segshield.reports.view_common import (
    attack_label,
    eps_format,
    has_ci,
    linf_format,
    ok_eval,
    ordered,
    value,
    with_ci,
)
from segshield.reports.view_medical import surface_cell, surface_unit
from segshield.reports.view_overview import EngineGroup, engine_groups
from segshield.results import AuditCell, AuditReport, EngineEval, Status
from segshield.results.types import SURFACE_METRICS

__all__ = ["cells_of", "curves_section", "eval_at", "legend", "pairs", "style"]

_GROUP_COLOUR = "#555555"  # a line-style legend entry is drawn in neutral grey


def pairs(report: AuditReport) -> list[tuple[str, str]]:
    return ordered((c.attack, c.loss) for c in report.cells)


def cells_of(report: AuditReport, attack: str, loss: str) -> list[AuditCell]:
    return sorted(
        (c for c in report.cells if c.attack == attack and c.loss == loss), key=lambda c: c.epsilon
    )


Reader = Callable[[AuditCell | None, str], EngineEval | None]


def eval_at(report: AuditReport) -> Reader:
    """(cell or None for clean, engine) -> that ok evaluation, else None."""

    def read(c: AuditCell | None, engine: str) -> EngineEval | None:
        if c is None:
            return ok_eval(report.clean.get(engine))
        return ok_eval(c.engines.get(engine)) if c.status == Status.OK else None

    return read


def style(i: int, j: int) -> dict[str, str]:
    """Colour of attack `i`, dash and marker of engine group `j`."""
    return {
        "color": PALETTE[i % len(PALETTE)],
        "dash": DASHES[j % len(DASHES)],
        "marker": MARKERS[j % len(MARKERS)],
    }


def legend(attacks: list[str], groups: list[EngineGroup] | None) -> list[Series]:
    """One entry per attack (its colour, solid) and, with more than one engine group, one per
    group (grey, its dash and marker)."""
    out = [Series(label=a, color=PALETTE[i % len(PALETTE)]) for i, a in enumerate(attacks)]
    if groups and len(groups) > 1:
        out += [
            Series(label=g.label, **{**style(0, j), "color": _GROUP_COLOUR})
            for j, g in enumerate(groups)
        ]
    return out


def _pair_label(report: AuditReport, attack: str, loss: str) -> str:
    many_losses = len({c.loss for c in report.cells}) > 1
    return attack_label(attack) + (f" · {loss}" if many_losses else "")


def _points(
    report: AuditReport, sources: list[AuditCell | None], name: str, engine: str | None, ci: bool
) -> tuple[list[tuple[float, float | None]], list[tuple[float, float, float]]]:
    """(x, y) points and CI bars of one line; engine None: the perturbation's `name`."""
    read = eval_at(report)
    points: list[tuple[float, float | None]] = []
    intervals: list[tuple[float, float, float]] = []
    for c in sources:
        x = 0.0 if c is None else c.epsilon
        if engine is not None:
            ev = read(c, engine)
            y = None if ev is None else _stored(ev, name)
            interval = None if ev is None or not ci else (ev.ci or {}).get(name)
        else:
            pert = c.perturbation if c is not None and c.status == Status.OK else None
            y, interval = getattr(pert, name, None), None
        if y is None:
            continue
        points.append((x, y))
        if interval is not None and interval.low is not None and interval.high is not None:
            intervals.append((x, interval.low, interval.high))
    return points, intervals


def _stored(ev: EngineEval, name: str) -> float | None:
    """The value drawn for `name`: a surface distance's stored mean over the images where it
    is defined (the gate reads it as undefined when some image has none), else ev.value."""
    if name in SURFACE_METRICS:
        return None if ev.metrics is None else getattr(ev.metrics, name, None)
    return ev.value(name)


def _series(
    report: AuditReport, name: str, with_clean: bool, ci: bool, per_engine: bool = True
) -> list[Series]:
    """One series per attack x loss (x engine group): colour by attack, dash by group."""
    groups: list[EngineGroup | None] = [*engine_groups(report)] if per_engine else [None]
    out = []
    for i, (attack, loss) in enumerate(pairs(report)):
        sources: list[AuditCell | None] = [*([None] if with_clean else [])]
        sources += cells_of(report, attack, loss)
        for j, group in enumerate(groups):
            engine = None if group is None else group.lead
            points, intervals = _points(report, sources, name, engine, ci)
            label = _pair_label(report, attack, loss)
            label += "" if group is None else f" · {group.label}"
            out.append(Series(label=label, points=points, intervals=intervals, **style(i, j)))
    return out


def _charts(report: AuditReport) -> list[Chart]:
    fe = eps_format(report)
    x_ticks = [0.0, *sorted({c.epsilon for c in report.cells})]
    bars = " Bars: stored bootstrap confidence intervals." if has_ci(report) else ""
    x_label = "ε (L∞ budget)"
    attacks = [_pair_label(report, a, loss) for a, loss in pairs(report)]
    keys = legend(attacks, engine_groups(report))
    specs = (
        ("dice", "Dice", "dice", True, True, "ε = 0 is clean." + bars),
        ("iou", "IoU", "iou", True, True, "ε = 0 is clean." + bars),
        ("attack-success", "Attack success", "attack_success", False, True,
         "(Dice clean − Dice adversarial) / Dice clean on each engine." + bars),
        ("pixel-error", "Pixel error (L2)", "pixel_error_l2", True, False,
         "L2 distance between label and prediction, √(FP+FN) per image, mean over images; "
         "ε = 0 is clean."),
    )  # fmt: skip
    charts = [
        Chart(slug, title, note, _series(report, key, clean, frac), x_label,
              title + (" (%)" if frac else ""), x_ticks, frac, format_x=fe, legend=keys)
        for slug, title, key, clean, frac, note in specs
    ]  # fmt: skip
    ssim = Chart(
        "ssim",
        "SSIM (adversarial vs clean image)",
        "Mean SSIM of the perturbed images; one line per attack (engine-independent).",
        _series(report, "ssim_mean", False, False, per_engine=False),
        x_label,
        "SSIM (%)",
        x_ticks,
        format_x=fe,
        legend=legend(attacks, None),
    )
    hd95 = _hd95_chart(report, x_ticks, keys)
    return [charts[0], *([hd95] if hd95 is not None else []), *charts[1:3], ssim, charts[3]]


def _hd95_chart(report: AuditReport, x_ticks: list[float], keys: list[Series]) -> Chart | None:
    """HD95 against ε (the Dice chart's colours, line styles and legend), or None when no
    evaluation has an HD95 to draw."""
    unit = surface_unit(report)
    series = _series(report, "hd95", True, False) if unit is not None else []
    if not any(s.points for s in series):
        return None
    note = (
        f"95th-percentile Hausdorff distance ({unit}), mean over the images where defined "
        "(Table I counts the others); ε = 0 is clean; lower is better."
    )
    return Chart("hd95", "HD95", note, series, "ε (L∞ budget)", f"HD95 ({unit})", x_ticks,
                 False, format_x=eps_format(report), legend=keys)  # fmt: skip


def _value_rows(
    report: AuditReport, attack: str, loss: str, groups: list[EngineGroup], hd95: bool
) -> list:
    read, fe, fl = eval_at(report), eps_format(report), linf_format(report)
    rows = [[cell("0 (clean)")]]
    for g in groups:
        ev = read(None, g.lead)
        rows[0] += [with_ci(format_percent(value(ev, "dice")), ev, "dice", num=True),
                    Cell(MISSING, num=True)]  # fmt: skip
        rows[0] += [surface_cell(ev, "hd95")] if hd95 else []
    rows[0] += [Cell(MISSING, num=True), Cell(MISSING, num=True)]
    for c in cells_of(report, attack, loss):
        ok = c.status == Status.OK
        row = [cell(fe(c.epsilon) + ("" if ok else " (failed)"))]
        for g in groups:
            ev = read(c, g.lead)
            row += [
                with_ci(format_percent(value(ev, "dice")), ev, "dice", num=True),
                Cell(format_percent(value(ev, "attack_success")), num=True),
            ]
            row += [surface_cell(ev, "hd95")] if hd95 else []
        pert = c.perturbation if ok else None
        row += [
            Cell(format_percent(getattr(pert, "ssim_mean", None)), num=True),
            Cell(fl(getattr(pert, "linf_max", None)), num=True),
        ]
        rows.append(row)
    return rows


def curves_section(report: AuditReport) -> Section:
    if not report.cells:
        return Section("curves", "ε curves", [Para([cell("No attack cells.")])])
    groups = engine_groups(report)
    agree = [g for g in groups if len(g.members) > 1]
    same = "".join(f" {', '.join(g.members[1:])}: drawn as {g.lead}." for g in agree)
    intro = Para(
        [cell("Colour: attack; line style and marker: engine group (engines whose Dice reads "
              f"the same on every cell are drawn once).{same} Failed cells are left out of "
              "their line.")],
        note=True,
    )  # fmt: skip
    charts = _charts(report)
    hd95 = any(c.slug == "hd95" for c in charts)
    header = ["ε"]
    for g in groups:
        header += [f"Dice {g.lead}", f"Attack success {g.lead}"]
        header += [f"HD95 ({surface_unit(report)}) {g.lead}"] if hd95 else []
    header += ["SSIM mean", "L∞ max"]
    blocks: list[Any] = [intro, *charts]
    for attack, loss in pairs(report):
        rows = _value_rows(report, attack, loss, groups, hd95)
        title = [cell(f"{attack_label(attack)}, loss "), code(loss)]
        blocks.append(Table(header, rows, title=title, cls="curve-table", folded=True))
    return Section("curves", "ε curves", blocks)
