"""The evaluation-strength sections of the report view: the gradient-masking / weak-evaluation
warnings, the worst case over every attack per engine and ε (with the ensemble cells' member
wins), and randomized-smoothing certification. All stored by the audit
(:mod:`segshield.results.evaluation`); formatted here, never computed."""

from __future__ import annotations

from typing import Any

from segshield.reports.format import MISSING, format_float, format_percent
from segshield.reports.svg import DASHES, MARKERS, PALETTE, Series
from segshield.reports.view import Block, Bullets, Cell, Chart, Para, Section, Table, cell, code
from segshield.reports.view_common import (
    PRIMARY_LABEL,
    attack_label,
    engines,
    eps_format,
    plain,
    value,
)
from segshield.results import (
    CERTIFIED_METRICS,
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    Evaluation,
    Status,
    WorstCase,
    certified_rows,
)

__all__ = [
    "certified_section",
    "evaluation_sections",
    "warning_banner",
    "warnings_section",
    "worst_case_section",
]

_CHECKS_NOTE = (
    "Checks for gradient masking and a weak evaluation (Athalye et al. 2018; Carlini et al. "
    "2019): attack success that falls as ε grows, more steps that attack less, an unbounded "
    "attack that fails, random noise as strong as the attack, a flat loss around the inputs."
)
_CERTIFIED_HEADER = ["Engine", "Radius (L2)", "Certified Dice", "Certified and correct"]
_CERTIFIED_HEADER += ["Certified (right or wrong)", "Abstained"]


def evaluation_sections(report: AuditReport) -> list[Section]:
    """The sections this report has data for (none for reports written before them)."""
    built = (warnings_section(report), worst_case_section(report), certified_section(report))
    return [s for s in built if s is not None]


# ----------------------------------------------------------------------------- warnings


def warning_banner(evaluation: Evaluation) -> list[Cell]:
    """The first-screen line: how many warnings, or whether the checks passed or ran."""
    n = len(evaluation.warnings)
    if n:
        word = "warning" if n == 1 else "warnings"
        return [
            Cell(f"{n} evaluation {word}", strong=True, badge="warn"),
            cell(": the attack numbers may overstate robustness."),
        ]
    if evaluation.probes is None:
        return [Cell("Evaluation checks not run", strong=True), cell(" (checks were off).")]
    k = (evaluation.checks or {}).get("probe_images")
    on = f" (probes on {plain(k)} images)" if k is not None else ""
    return [Cell("Evaluation checks passed", badge="ok"), cell(f"{on}: no warning.")]


def _where(report: AuditReport, w: dict[str, Any]) -> str:
    """Where a warning was raised, for its hover title (the message says it in words)."""
    parts = [f"{k} {plain(w.get(k))}" for k in ("attack", "loss", "engine") if w.get(k)]
    if w.get("epsilon") is not None:
        parts.append(f"ε {eps_format(report)(w.get('epsilon'))}")
    evidence = w.get("evidence") if isinstance(w.get("evidence"), dict) else {}
    parts += [f"{k} = {plain(v)}" for k, v in evidence.items()]
    return "; ".join(parts)


def warnings_section(report: AuditReport) -> Section | None:
    """The banner line and one bullet per warning (check, message); None without the
    evaluation section (older reports)."""
    evaluation = report.evaluation
    if evaluation is None:
        return None
    blocks: list[Block] = [Para(warning_banner(evaluation))]
    items = [
        [
            Cell(str(w.get("check") or "warning"), code=True, title=_where(report, w) or None),
            cell(f": {w.get('message') or w.get('check') or MISSING}"),
        ]
        for w in evaluation.warnings
        if isinstance(w, dict)
    ]
    if items:
        blocks.append(Bullets(items))
    if evaluation.probes is not None:
        blocks.append(Para([cell(_CHECKS_NOTE)], note=True))
    elif items:  # warnings without probes: a part of the evaluation failed
        blocks.append(Para([cell("The gradient-masking checks did not run.")], note=True))
    return Section("evaluation-warnings", "Evaluation warnings", blocks)


# ----------------------------------------------------------------------------- worst case


def _strongest(
    report: AuditReport, wc: WorstCase, engine: str, metric: str
) -> tuple[AuditCell | None, Any]:
    """The single cell among the worst case's with the lowest stored `metric` on `engine`
    (a lookup: the first on ties), and that value."""
    ids = set(wc.cells)
    best: tuple[AuditCell | None, Any] = (None, None)
    for c in report.cells:
        v = value(c.engines.get(engine), metric) if c.status == Status.OK else None
        if c.id in ids and v is not None and (best[1] is None or v < best[1]):
            best = (c, v)
    return best


def _worst_rows(report: AuditReport, evaluation: Evaluation, seg: bool) -> list[list[Cell]]:
    primary = report.primary_metric
    order = engines(report)
    rows = []
    for wc in evaluation.worst_case:
        names = sorted(wc.engines, key=lambda n: order.index(n) if n in order else len(order))
        for name in names:
            ev = wc.engines[name]
            strongest, its = _strongest(report, wc, name, primary)
            row = [
                cell(eps_format(report)(wc.epsilon)),
                Cell(name, code=True, strong=name == SOURCE_ENGINE),
                Cell(format_percent(value(ev, primary)), num=True, strong=True),
            ]
            if seg:
                row.append(Cell(format_percent(value(ev, "dice_per_image_mean")), num=True))
            row += [
                Cell(format_percent(value(ev, "attack_success")), num=True),
                code(None if strongest is None else _attack_loss(strongest.id)),
                Cell(format_percent(its), num=True),
            ]
            rows.append(row)
    return rows


def _worst_blocks(report: AuditReport, evaluation: Evaluation) -> list[Block]:
    if not evaluation.worst_case:
        return [Para([cell("No worst case: no finished cell with per-image records at ε > 0.")])]
    primary = report.primary_metric
    label = PRIMARY_LABEL.get(primary, primary)
    seg = primary == "dice"
    pooled = (
        "Dice of the pooled confusion counts of the chosen cells"
        if seg
        else "the share of images that no cell fooled"
    )
    intro = (
        f"Per image, the strongest of every attack and loss at each ε, on each engine "
        f"separately (an engine can be fooled by another cell than the source). Worst-case "
        f"{label}: {pooled}; the strongest single cell (lowest {label} on that engine) is "
        "shown beside it."
    )
    header = ["ε", "Engine", f"Worst-case {label}"]
    header += ["Per-image mean Dice"] if seg else []
    header += ["Attack success", "Strongest single cell", f"Its {label}"]
    return [
        Para([cell(intro)], note=True),
        Table(header, _worst_rows(report, evaluation, seg), cls="worst-case"),
        Para([cell("Cells taken into account at each ε:")], note=True),
        Bullets([_considered(report, wc) for wc in evaluation.worst_case]),
    ]


def _considered(report: AuditReport, wc: WorstCase) -> list[Cell]:
    """``ε=4/255: 2 cells: `pgd/bce`, `fgsm/bce` ``."""
    parts = [cell(f"ε={eps_format(report)(wc.epsilon)}: {len(wc.cells)} cells: ")]
    for i, cid in enumerate(wc.cells):
        parts += [cell(", "), code(_attack_loss(cid))] if i else [code(_attack_loss(cid))]
    return parts


def _attack_loss(cell_id: str) -> str:
    """``pgd/bce/0.0313725`` -> ``pgd/bce``: the row already shows ε, formatted."""
    return "/".join(cell_id.split("/")[:2])


def _ensemble_item(report: AuditReport, c: AuditCell) -> list[Cell]:
    ens = c.ensemble or {}
    members, wins = list(ens.get("members") or []), list(ens.get("wins") or [])
    per_image = ens.get("winner_per_image")
    of = f" of {len(per_image)}" if isinstance(per_image, list) else ""
    parts = [Cell(attack_label(c.attack), strong=True)]
    parts += [cell(f" ε={eps_format(report)(c.epsilon)}, loss "), code(c.loss), cell(": ")]
    for i, member in enumerate(members):
        won = wins[i] if i < len(wins) else None
        parts += [cell("; " if i else ""), code(member), cell(f" won {plain(won)}{of} images")]
    return parts


def worst_case_section(report: AuditReport) -> Section | None:
    """Worst case per engine and ε against the strongest single cell, the cells it ran
    over, and the ensemble cells' member wins; None when the report has neither."""
    ensembles = [c for c in report.cells if isinstance(c.ensemble, dict)]
    if report.evaluation is None and not ensembles:
        return None
    blocks = [] if report.evaluation is None else _worst_blocks(report, report.evaluation)
    if ensembles:
        blocks += [
            Para([cell("Ensemble cells: the images on which each member was the strongest "
                       "(on the source engine).")], note=True),
            Bullets([_ensemble_item(report, c) for c in ensembles]),
        ]  # fmt: skip
    return Section("worst-case", "Worst case over every attack", blocks)


# ----------------------------------------------------------------------------- certified


def _settings_parts(settings: dict[str, Any]) -> list[Cell]:
    def num(key: str) -> str:
        return plain(settings.get(key))

    confidence = settings.get("confidence")
    text = (
        f"Randomized smoothing (Cohen et al. 2019): Gaussian noise σ = {num('sigma')}, "
        f"n0 = {num('n0')} selection and n = {num('n')} estimation samples per image, "
        f"α = {num('alpha')} (confidence {format_percent(confidence)}), correction "
        f"{plain(settings.get('correction'))}, on {num('images')} images. Radius: L2 in "
        "[0, 1] pixel units; abstentions count as errors in the certified Dice."
    )
    guarantee = settings.get("guarantee")
    return [cell(text + (f" Guarantee: {guarantee}." if guarantee else ""))]


def _certified_rows(engine_recs: dict[str, Any], rows: list[tuple]) -> list[list[Cell]]:
    out = []
    for name, rec in engine_recs.items():
        if isinstance(rec, dict) and rec.get("error"):
            error = Cell("error", badge="bad", title=str(rec["error"]))
            out.append([code(name), cell(MISSING), error, cell(str(rec["error"])), cell(""),
                        cell("")])  # fmt: skip
            continue
        for engine, radius, values in rows:
            if engine == name:
                out.append(
                    [code(name), Cell(format_float(radius), num=True)]
                    + [Cell(format_percent(values.get(m)), num=True) for m in CERTIFIED_METRICS]
                )
    return out


def _share_chart(rows: list[tuple], names: list[str]) -> Chart:
    series = [
        Series(
            label=name,
            points=[(r, v.get("certified_share")) for e, r, v in rows if e == name],
            color=PALETTE[i % len(PALETTE)],
            dash=DASHES[i % len(DASHES)],
            marker=MARKERS[i % len(MARKERS)],
        )
        for i, name in enumerate(names)
    ]
    note = "Share of pixels certified correct at each L2 radius, per engine."
    ticks = sorted({r for _, r, _ in rows})
    return Chart("certified-share", "Certified share", note, series, "L2 radius",
                 "Certified and correct (%)", ticks, x_name="radius")  # fmt: skip


def certified_section(report: AuditReport) -> Section | None:
    """Settings line, engine x radius table (error rows for failed engines) and a chart of
    the certified share; None when the audit ran no certification."""
    certified = report.certified
    if not isinstance(certified, dict):
        return None
    title = "Certified robustness"
    blocks: list[Block] = [Para(_settings_parts(certified.get("settings") or {}), note=True)]
    if certified.get("error"):
        failed = [Cell("Certification failed", badge="bad"), cell(f": {certified['error']}")]
        return Section("certified", title, [*blocks, Para(failed)])
    engine_recs = certified.get("engines") or {}
    rows = certified_rows(certified)
    blocks.append(Table(_CERTIFIED_HEADER, _certified_rows(engine_recs, rows), cls="certified"))
    seconds = [
        f"{name} {plain(rec.get('seconds'))} s"
        for name, rec in engine_recs.items()
        if isinstance(rec, dict) and rec.get("seconds") is not None
    ]
    if seconds:
        blocks.append(Para([cell("Time: " + ", ".join(seconds) + ".")], note=True))
    names = [n for n in engine_recs if any(e == n for e, _, _ in rows)]
    if names:
        blocks.append(_share_chart(rows, names))
    return Section("certified", title, blocks)
