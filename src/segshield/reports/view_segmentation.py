"""View sections of a segmentation audit (binary, multi-class, multi-label): Table I per
engine group, per-class scores, attack losses, targeted attacks and image panels (the ε
curves are in :mod:`view_curves`, the per-image table in :mod:`view_images`, surface
distances and the per-volume table in :mod:`view_medical`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segshield.reports.format import MISSING, format_float, format_percent
from segshield.reports.view import (
    Block,
    Bullets,
    Cell,
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
    eps_format,
    largest_cells,
    ok_eval,
    ordered,
    value,
    with_ci,
)
from segshield.reports.view_curves import curves_section, eval_at
from segshield.reports.view_images import per_image_sections
from segshield.reports.view_medical import (
    SURFACE_ROWS,
    per_volume_sections,
    surface_cell,
    surface_note,
    surface_unit,
)
from segshield.reports.view_overview import EngineGroup, engine_groups
from segshield.results import SOURCE_ENGINE, AuditReport, EngineEval, Status

UNITS = (
    "Fractions are shown as percent with two decimals; the Dice gap and changes (Δ) in "
    "percentage points; loss and pixel errors as plain values; {eps}; a bracket is the "
    f"stored bootstrap confidence interval in percent; {MISSING} marks a missing value."
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
    surface = " HD95 and ASD," if surface_unit(report) is not None else ""
    return Para(
        [cell(f"{k} of {n} {have} an empty ground truth (no foreground): per-image Dice is "
              f"undefined there, so per-image means,{surface} fooled shares, success rates and "
              "panel choice leave them out; the pooled scores below count their false "
              "positives.")],
        note=True,
    )  # fmt: skip


def cell_warnings(report: AuditReport) -> list[Block]:
    """The cells' warnings (side effects that cost no measurement, e.g. a panel not written)
    as a short list, each led by its cell; [] when there is none."""
    fe = eps_format(report)
    items = [
        [
            Cell(attack_label(c.attack), strong=True),
            cell(f" ε={fe(c.epsilon)}, loss "),
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
    surface = surface_note(report)
    groups = engine_groups(report)
    if not groups:
        return Section(
            "summary",
            "Summary per engine (Table I)",
            [intro, Para([cell("No engine was evaluated.")])],
        )
    header = ["Metric", "Clean", *(cell_header(report, c) for c in cells)]
    blocks: list[Any] = [intro, *(p for p in (empty, surface) if p is not None)]
    for engine, same in collapse(groups, lambda e: _table_i_rows(report, cells, e)):
        rows = _table_i_rows(report, cells, engine)
        heading = [code(engine), cell(" (source)" if engine == SOURCE_ENGINE else "")]
        if same:
            heading.append(cell(f" · same for: {', '.join(same)}"))
        blocks.append(Table(header, rows, title=heading, cls="table-i"))
    return Section("summary", "Summary per engine (Table I)", blocks)


def _table_i_rows(report: AuditReport, cells: list, engine: str) -> list[list[Cell]]:
    columns = [report.clean.get(engine)]
    columns += [c.engines.get(engine) if c.status == Status.OK else None for c in cells]
    rows = [
        [cell(label), *(_summary_cell(ev, key, fmt) for ev in columns)]
        for label, key, fmt in TABLE_I_ROWS
    ]
    unit = surface_unit(report)
    if unit is not None:  # HD95 / ASD: the stored mean, its undefined count under it
        rows += [
            [cell(f"{label} ({unit})"), *(surface_cell(ev, key) for ev in columns)]
            for label, key in SURFACE_ROWS
        ]
    return rows


def collapse(
    groups: list[EngineGroup], rows_of: Callable[[str], list[list[Cell]]]
) -> list[tuple[str, list[str]]]:
    """(engine, engines whose table reads the same) per distinct table, in engine order:
    within each agreeing group, members whose rows (every text shown) equal the lead's
    share its table; the others keep their own."""
    out: list[tuple[str, list[str]]] = []
    for group in groups:
        tables: list[tuple[str, list[list[Cell]], list[str]]] = []
        for name in group.members:
            rows = rows_of(name)
            match = next((t for t in tables if t[1] == rows), None)
            if match is None:
                tables.append((name, rows, []))
            else:
                match[2].append(name)
        out += [(name, same) for name, _, same in tables]
    return out


def _class_name(columns: list[EngineEval | None], k: int) -> str:
    """The stored name of class `k` (``class k`` without one), marked when background."""
    first = next((_scores(ev, k) for ev in columns if _scores(ev, k) is not None), None)
    name = first.name if first is not None and first.name else f"class {k}"
    return name + (" (background)" if first is not None and not first.foreground else "")


def _scores(ev: EngineEval | None, k: int) -> Any:
    per = ev.metrics.per_class if ev is not None and ev.metrics is not None else []
    return per[k] if k < len(per) else None


def _per_class_rows(report: AuditReport, cells: list, engine: str, n: int) -> list[list[Cell]]:
    columns = [ok_eval(report.clean.get(engine))]
    columns += [ok_eval(c.engines.get(engine)) if c.status == Status.OK else None for c in cells]
    rows = []
    for k in range(n):
        row = [cell(_class_name(columns, k))]
        for ev in columns:
            scores = _scores(ev, k)
            iou = format_percent(None if scores is None else scores.iou)
            dice = format_percent(None if scores is None else scores.dice)
            row.append(Cell(dice, num=True, sub=None if scores is None else f"IoU {iou}"))
        rows.append(row)
    return rows


def per_class_sections(report: AuditReport) -> list[Section]:
    """Dice and IoU per class (clean and each attack's largest ε), when a model has several
    classes; one table per engine group whose values read the same."""
    evals = [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]
    classes = max((len(ev.metrics.per_class) for ev in evals if ev.ok and ev.metrics), default=0)
    if classes < 2:
        return []
    cells = largest_cells(report, default_loss(report))
    header = ["Class", "Clean", *(cell_header(report, c) for c in cells)]
    blocks: list[Any] = [
        Para([cell("Dice of each class (IoU under it), one-vs-rest over the whole set; the "
                   "foreground mean of these is the Dice of the tables above.")], note=True)
    ]  # fmt: skip
    rows_of = lambda e: _per_class_rows(report, cells, e, classes)  # noqa: E731
    for engine, same in collapse(engine_groups(report), rows_of):
        title = [code(engine)] + ([cell(f" · same for: {', '.join(same)}")] if same else [])
        blocks.append(Table(header, rows_of(engine), title=title, cls="per-class"))
    return [Section("per-class", "Per-class scores", blocks)]


def losses_sections(report: AuditReport) -> list[Section]:
    """Attack losses side by side (seed unet-family): source Dice and attack success per loss."""
    losses = ordered(c.loss for c in report.cells)
    if len(losses) < 2:
        return []
    by_key = {(c.attack, c.epsilon, c.loss): c for c in report.cells}
    fe = eps_format(report)
    header = ["Attack", "ε"]
    for loss in losses:
        header += [f"Dice {loss}", f"AS {loss}"]
    rows = []
    for attack in ordered(c.attack for c in report.cells):
        for eps in sorted({c.epsilon for c in report.cells if c.attack == attack}):
            row = [cell(attack_label(attack)), cell(fe(eps))]
            for loss in losses:
                c = by_key.get((attack, eps, loss))
                ev = eval_at(report)(c, SOURCE_ENGINE) if c is not None else None
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
    fe = eps_format(report)
    header = ["Attack", "ε cap", "Target", "IoU to target (clean → adv)", "Pixel acc. to target"]
    header += ["L2 mean", "L∞ mean", *(f"IoU to target {e}" for e in names)]
    rows = []
    for c in cells:
        t = c.targeted or {}
        src = t.get("source") or {}
        to_target = format_percent(src.get("iou_mean"))
        row = [
            cell(attack_label(c.attack)),
            cell(fe(c.epsilon)),
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
    fe = eps_format(report)
    blocks: list[Any] = [
        Para([cell("The images each cell hit hardest, as stored by the audit; Dice is per image "
                   "(source engine), clean → adversarial. Each attack's largest ε is shown; "
                   "smaller ε are folded.")], note=True)
    ]  # fmt: skip
    shape = report.dataset.get("image_shape")
    if isinstance(shape, (list, tuple)) and len(shape) == 4:  # (C, D, H, W): a panel is one slice
        blocks.append(Para([cell("3-D volumes: each panel shows one slice, named in its first "
                                 "column title.")], note=True))  # fmt: skip
    for attack, loss in ordered((c.attack, c.loss) for c in cells):
        group = sorted(
            (c for c in cells if (c.attack, c.loss) == (attack, loss)), key=lambda c: -c.epsilon
        )
        for k, c in enumerate(group):
            label = f"{attack_label(c.attack)} ε={fe(c.epsilon)}"
            panels = [
                PanelView(
                    file=p.file,
                    columns=list(p.columns),
                    caption=[
                        Cell(attack_label(c.attack), strong=True),
                        cell(f" ε={fe(c.epsilon)} · image "),
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
        *per_image_sections(report),
        *per_volume_sections(report),
        *per_class_sections(report),
        *losses_sections(report),
        *targeted_sections(report),
        panels_section(report),
    ]
