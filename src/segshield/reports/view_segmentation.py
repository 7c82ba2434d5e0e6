"""View sections of a segmentation audit (binary, multi-class, multi-label): Table I per
engine, ε curves, per-class scores, attack losses, targeted attacks and image panels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segshield.reports.format import (
    MISSING,
    format_epsilon,
    format_float,
    format_percent,
    format_steps,
)
from segshield.reports.svg import DASHES, MARKERS, PALETTE, Series
from segshield.reports.view import (
    Block,
    Bullets,
    Cell,
    Chart,
    PanelGroup,
    PanelView,
    Para,
    Section,
    Table,
    cell,
    code,
)
from segshield.reports.view_common import (
    attack_label,
    cell_header,
    default_loss,
    engines,
    has_ci,
    largest_cells,
    ok_eval,
    ordered,
    value,
    with_ci,
)
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval, Status

UNITS = (
    "Fractions are shown as percent with two decimals; the Dice gap in percentage points; "
    "loss and pixel errors as plain values; ε and L∞ in 1/255 steps; a bracket is the stored "
    f"bootstrap confidence interval in percent; {MISSING} marks a missing value."
)

# Table I of the seed paper (U-Net on BUSI): row label, metric name, formatter.
TABLE_I_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("Accuracy", "accuracy", format_percent),
    ("Loss", "loss", format_float),
    ("Dice", "dice", format_percent),
    ("Mean IoU", "mean_iou", format_percent),
    ("IoU", "iou", format_percent),
    ("Precision", "precision", format_percent),
    ("Recall", "recall", format_percent),
    ("Pixel error (L2)", "pixel_error_l2", format_float),
)


def _summary_cell(ev: EngineEval | None, name: str, fmt: Callable[[Any], str]) -> Cell:
    if ev is not None and not ev.ok:
        # Evaluated but failed on this engine: say so, not just "—".
        return Cell("error", num=True, badge="bad", title=ev.error)
    return with_ci(fmt(value(ev, name)), ev, name, num=True)


def empty_truth_note(report: AuditReport) -> Para | None:
    """A note "k of N images have an empty ground truth", from the clean run (the source's,
    else any engine's: the images are the same); None when no image has one."""
    clean = [ok_eval(report.clean.get(SOURCE_ENGINE)), *map(ok_eval, report.clean.values())]
    m = next((ev.metrics for ev in clean if ev is not None and ev.metrics is not None), None)
    if m is None or not m.n_empty_truth:
        return None
    k, n = m.n_empty_truth, m.n_images
    have = "image has" if k == 1 else "images have"
    return Para(
        [cell(f"{k} of {n} {have} an empty ground truth (no foreground): per-image Dice is "
              "undefined there, so per-image means, fooled shares, success rates and panel "
              "choice leave them out; the pooled scores below count their false positives.")],
        note=True,
    )  # fmt: skip


def cell_warnings(report: AuditReport) -> list[Block]:
    """The cells' warnings (side effects that cost no measurement, e.g. a panel not written)
    as a short list, each led by its cell; [] when there is none."""
    items = [
        [
            Cell(attack_label(c.attack), strong=True),
            cell(f" ε={format_epsilon(c.epsilon)}, loss "),
            code(c.loss),
            cell(f": {w}"),
        ]
        for c in report.cells
        for w in c.warnings
    ]
    if not items:
        return []
    return [
        Para([cell("Warnings (the cells keep their measurements):")], note=True),
        Bullets(items),
    ]


def summary_section(report: AuditReport) -> Section:
    loss = default_loss(report)
    cells = largest_cells(report, loss)
    intro = Para(
        [cell("Clean inputs, then each attack at its largest ε with loss "), code(loss), cell(".")],
        note=True,
    )
    empty = empty_truth_note(report)
    names = engines(report)
    if not names:
        return Section(
            "summary",
            "Summary per engine (Table I)",
            [intro, Para([cell("No engine was evaluated.")])],
        )
    header = ["Metric", "Clean", *(cell_header(c) for c in cells)]
    blocks: list[Any] = [intro, *([empty] if empty else [])]
    for engine in names:
        columns = [report.clean.get(engine)]
        columns += [c.engines.get(engine) if c.status == Status.OK else None for c in cells]
        rows = [
            [cell(label), *(_summary_cell(ev, key, fmt) for ev in columns)]
            for label, key, fmt in TABLE_I_ROWS
        ]
        heading = [code(engine), cell(" (source)" if engine == SOURCE_ENGINE else "")]
        blocks.append(Table(header, rows, title=heading, cls="table-i"))
    return Section("summary", "Summary per engine (Table I)", blocks)


def _pairs(report: AuditReport) -> list[tuple[str, str]]:
    return ordered((c.attack, c.loss) for c in report.cells)


def _cells_of(report: AuditReport, attack: str, loss: str) -> list[AuditCell]:
    return sorted(
        (c for c in report.cells if c.attack == attack and c.loss == loss), key=lambda c: c.epsilon
    )


Reader = Callable[[AuditCell | None, str], EngineEval | None]


def _eval_at(report: AuditReport) -> Reader:
    def read(c: AuditCell | None, engine: str) -> EngineEval | None:
        if c is None:
            return ok_eval(report.clean.get(engine))
        return ok_eval(c.engines.get(engine)) if c.status == Status.OK else None

    return read


def _series(
    report: AuditReport, name: str, with_clean: bool, ci: bool, per_engine: bool = True
) -> list[Series]:
    """One series per attack x loss (x engine): colour by attack, dash and marker by engine."""
    read = _eval_at(report)
    names = engines(report) if per_engine else [""]
    pairs = _pairs(report)
    many_losses = len({loss for _, loss in pairs}) > 1
    out = []
    for i, (attack, loss) in enumerate(pairs):
        sources: list[AuditCell | None] = [
            *([None] if with_clean else []),
            *_cells_of(report, attack, loss),
        ]
        for j, engine in enumerate(names):
            points, intervals = [], []
            for c in sources:
                x = 0.0 if c is None else c.epsilon
                if per_engine:
                    ev = read(c, engine)
                    y = None if ev is None else ev.value(name)
                    interval = None if ev is None or not ci else (ev.ci or {}).get(name)
                else:
                    pert = c.perturbation if c is not None and c.status == Status.OK else None
                    y, interval = getattr(pert, name, None), None
                if y is None:
                    continue
                points.append((x, y))
                if interval is not None and interval.low is not None and interval.high is not None:
                    intervals.append((x, interval.low, interval.high))
            label = attack_label(attack) + (f" · {loss}" if many_losses else "")
            label += f" · {engine}" if per_engine else ""
            style = {
                "color": PALETTE[i % len(PALETTE)],
                "dash": DASHES[j % len(DASHES)],
                "marker": MARKERS[j % len(MARKERS)],
            }
            out.append(Series(label=label, points=points, intervals=intervals, **style))
    return out


def _charts(report: AuditReport) -> list[Chart]:
    x_ticks = [0.0, *sorted({c.epsilon for c in report.cells})]
    bars = " Bars: stored bootstrap confidence intervals." if has_ci(report) else ""
    x_label = "ε (L∞ budget, in 1/255 steps)"
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
        Chart(
            slug,
            name,
            note,
            _series(report, key, clean, frac),
            x_label,
            name + (" (%)" if frac else ""),
            x_ticks,
            frac,
        )
        for slug, name, key, clean, frac, note in specs
    ]
    ssim = Chart(
        "ssim",
        "SSIM (adversarial vs clean image)",
        "Mean SSIM of the perturbed images; one line per attack (engine-independent).",
        _series(report, "ssim_mean", False, False, per_engine=False),
        x_label,
        "SSIM (%)",
        x_ticks,
    )
    return [*charts[:3], ssim, charts[3]]


def curves_section(report: AuditReport) -> Section:
    if not report.cells:
        return Section("curves", "ε curves", [Para([cell("No attack cells.")])])
    intro = Para(
        [cell("Colour: attack; line style and marker: engine. Engines that agree exactly draw "
              "on top of each other. Failed cells are left out of their line.")],
        note=True,
    )  # fmt: skip
    read = _eval_at(report)
    names = engines(report)
    header = ["ε"]
    for engine in names:
        header += [f"Dice {engine}", f"Attack success {engine}"]
    header += ["SSIM mean", "L∞ max"]
    blocks: list[Any] = [intro, *_charts(report)]
    for attack, loss in _pairs(report):
        rows = [[cell("0 (clean)")]]
        for engine in names:
            rows[0] += [
                with_ci(
                    format_percent(value(read(None, engine), "dice")),
                    read(None, engine),
                    "dice",
                    num=True,
                ),
                Cell(MISSING, num=True),
            ]
        rows[0] += [Cell(MISSING, num=True), Cell(MISSING, num=True)]
        for c in _cells_of(report, attack, loss):
            ok = c.status == Status.OK
            row = [cell(format_epsilon(c.epsilon) + ("" if ok else " (failed)"))]
            for engine in names:
                ev = read(c, engine)
                row += [
                    with_ci(format_percent(value(ev, "dice")), ev, "dice", num=True),
                    Cell(format_percent(value(ev, "attack_success")), num=True),
                ]
            pert = c.perturbation if ok else None
            row += [
                Cell(format_percent(getattr(pert, "ssim_mean", None)), num=True),
                Cell(format_steps(getattr(pert, "linf_max", None)), num=True),
            ]
            rows.append(row)
        title = [cell(f"{attack_label(attack)}, loss "), code(loss)]
        blocks.append(Table(header, rows, title=title, cls="curve-table", folded=True))
    return Section("curves", "ε curves", blocks)


def per_class_sections(report: AuditReport) -> list[Section]:
    """Dice per class (clean and each attack's largest ε), when a model has several classes."""
    evals = [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]
    classes = max((len(ev.metrics.per_class) for ev in evals if ev.ok and ev.metrics), default=0)
    if classes < 2:
        return []
    cells = largest_cells(report, default_loss(report))
    header = ["Class", "Clean", *(cell_header(c) for c in cells)]
    blocks: list[Any] = [
        Para([cell("Dice (IoU) of each class, one-vs-rest over the whole set.")], note=True)
    ]
    for engine in engines(report):
        columns = [ok_eval(report.clean.get(engine))]
        columns += [
            ok_eval(c.engines.get(engine)) if c.status == Status.OK else None for c in cells
        ]
        rows = []
        for k in range(classes):
            first = next(
                (
                    ev.metrics.per_class[k]
                    for ev in columns
                    if ev and ev.metrics and k < len(ev.metrics.per_class)
                ),
                None,
            )
            name = (first.name if first and first.name else f"class {k}") if first else f"class {k}"
            row = [cell(name)]
            for ev in columns:
                scores = (
                    ev.metrics.per_class[k]
                    if ev and ev.metrics and k < len(ev.metrics.per_class)
                    else None
                )
                dice = format_percent(None if scores is None else scores.dice)
                iou = format_percent(None if scores is None else scores.iou)
                row.append(Cell(f"{dice} ({iou})", num=True))
            rows.append(row)
        blocks.append(Table(header, rows, title=[code(engine)], cls="per-class"))
    return [Section("per-class", "Per-class scores", blocks)]


def losses_sections(report: AuditReport) -> list[Section]:
    """Attack losses side by side (seed unet-family): source Dice and attack success per loss."""
    losses = ordered(c.loss for c in report.cells)
    if len(losses) < 2:
        return []
    by_key = {(c.attack, c.epsilon, c.loss): c for c in report.cells}
    header = ["Attack", "ε"]
    for loss in losses:
        header += [f"Dice {loss}", f"AS {loss}"]
    rows = []
    for attack in ordered(c.attack for c in report.cells):
        for eps in sorted({c.epsilon for c in report.cells if c.attack == attack}):
            row = [cell(attack_label(attack)), cell(format_epsilon(eps))]
            for loss in losses:
                c = by_key.get((attack, eps, loss))
                ev = _eval_at(report)(c, SOURCE_ENGINE) if c is not None else None
                row += [
                    Cell(format_percent(value(ev, "dice")), num=True),
                    Cell(format_percent(value(ev, "attack_success")), num=True),
                ]
            rows.append(row)
    note = Para(
        [
            cell(
                f"Dice and attack success (AS) on the source engine {SOURCE_ENGINE} for each "
                "attack loss."
            )
        ],
        note=True,
    )
    return [Section("losses", "Attack losses compared", [note, Table(header, rows)])]


def targeted_sections(report: AuditReport) -> list[Section]:
    """Targeted attacks (seed asma's table): IoU and pixel accuracy to the target, L2, L∞."""
    cells = [c for c in report.cells if c.targeted]
    if not cells:
        return []
    names = ordered(e for c in cells for e in (c.targeted or {}).get("engines", {}))
    header = ["Attack", "ε cap", "Target", "IoU to target (clean → adv)", "Pixel acc. to target"]
    header += ["L2 mean", "L∞ mean", *(f"IoU to target {e}" for e in names)]
    rows = []
    for c in cells:
        t = c.targeted or {}
        src = t.get("source") or {}
        to_target = format_percent(src.get("iou_mean"))
        row = [
            cell(attack_label(c.attack)),
            cell(format_epsilon(c.epsilon)),
            code(t.get("target")),
            Cell(f"{format_percent(src.get('clean_iou_mean'))} → {to_target}", num=True),
            Cell(format_percent(src.get("pixel_accuracy_mean")), num=True),
            Cell(format_float(src.get("l2_mean")), num=True),
            Cell(format_float(src.get("linf_mean")), num=True),
        ]
        row += [
            Cell(format_percent((t.get("engines") or {}).get(e, {}).get("iou_to_target")), num=True)
            for e in names
        ]
        rows.append(row)
    return [Section("targeted", "Targeted attacks", [Table(header, rows)])]


def panels_section(report: AuditReport) -> Section:
    """The panels of each cell, then the cells' warnings (a panel that was not written)."""
    cells = [c for c in report.cells if c.panels]
    warnings = cell_warnings(report)
    if not cells:
        none = Para([cell("No image panels in this report.")])
        return Section("panels", "Image panels", [none, *warnings])
    blocks: list[Any] = [
        Para([cell("The images each cell hit hardest, as stored by the audit; Dice is per image "
                   "(source engine), clean → adversarial. Each attack's largest ε is shown; "
                   "smaller ε are folded.")], note=True)
    ]  # fmt: skip
    for attack, loss in ordered((c.attack, c.loss) for c in cells):
        group = sorted(
            (c for c in cells if (c.attack, c.loss) == (attack, loss)), key=lambda c: -c.epsilon
        )
        for k, c in enumerate(group):
            label = f"{attack_label(c.attack)} ε={format_epsilon(c.epsilon)}"
            panels = [
                PanelView(
                    file=p.file,
                    columns=list(p.columns),
                    caption=[
                        Cell(attack_label(c.attack), strong=True),
                        cell(f" ε={format_epsilon(c.epsilon)} · image "),
                        code(p.image),
                        cell(
                            f" · Dice {format_percent(p.dice_clean)} → {format_percent(p.dice_adv)}"
                        ),
                    ],
                )
                for p in c.panels
            ]
            blocks.append(PanelGroup([cell(f"{label}, loss "), code(c.loss)], panels, folded=k > 0))
    return Section("panels", "Image panels", [*blocks, *warnings])


def sections(report: AuditReport) -> list[Section]:
    return [
        summary_section(report),
        curves_section(report),
        *per_class_sections(report),
        *losses_sections(report),
        *targeted_sections(report),
        panels_section(report),
    ]
