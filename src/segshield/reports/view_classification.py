"""View sections of a classifier audit (seed mammography, Figs. 9-12): accuracy against ε
per attack with its bootstrap CI and per-class accuracy, flip and success rates, and SSIM
against ε, as tables and chart series."""

from __future__ import annotations

from typing import Any

from segshield.reports.format import MISSING, format_float, format_percent
from segshield.reports.svg import Series
from segshield.reports.view import Bullets, Cell, Chart, Para, Section, Table, cell, code
from segshield.reports.view_common import (
    attack_label,
    engines,
    eps_format,
    linf_format,
    ok_eval,
    ordered,
)
from segshield.reports.view_curves import legend, style
from segshield.reports.view_overview import engine_groups
from segshield.reports.view_segmentation import cell_warnings, collapse
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval, Status

UNITS = (
    "Accuracy, per-class accuracy, flipped share and success rate in percent; {eps}; L2 in "
    "[0, 1] pixel units; CI: percentile bootstrap over images; "
    f"{MISSING} marks a missing value."
)
# Attack parameters that change with ε are in report.json, not in the parameter line.
_PER_EPS_PARAMS = ("eps", "alpha", "eps_linf_equivalent")


def _attacks(report: AuditReport) -> list[str]:
    return ordered(c.attack for c in report.cells)


def _cells_of(report: AuditReport, attack: str) -> list[AuditCell]:
    return [c for c in report.cells if c.attack == attack]


def _eval(c: AuditCell, engine: str) -> EngineEval | None:
    return ok_eval(c.engines.get(engine)) if c.status == Status.OK else None


def _ci(ev: EngineEval | None) -> str:
    ci = (ev.ci or {}).get("accuracy") if ev is not None else None
    if ci is None or ci.low is None or ci.high is None:
        return MISSING
    return f"[{format_percent(ci.low)}, {format_percent(ci.high)}]"


def _level(report: AuditReport) -> str:
    for ev in [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]:
        ci = (ev.ci or {}).get("accuracy")
        if ci is not None:
            return f"{ci.level * 100:g}% CI"
    return "CI"


def _classes(report: AuditReport) -> list[str]:
    """Class names: the dataset's, else the per-class scores' names, else "class k"."""
    named = report.dataset.get("classes")
    if isinstance(named, list) and named:
        return [str(c) for c in named]
    for ev in report.clean.values():
        if ev.metrics and ev.metrics.per_class:
            return [s.name or f"class {s.index}" for s in ev.metrics.per_class]
    return []


def _class_accuracy(ev: EngineEval | None, k: int) -> str:
    per = ev.metrics.per_class if ev is not None and ev.metrics is not None else []
    return format_percent(per[k].recall if k < len(per) else None)


def _accuracy(ev: EngineEval | None) -> float | None:
    return None if ev is None else ev.value("accuracy")


def _summary_line(report: AuditReport, attack: str, engine: str) -> str | None:
    """Accuracy and SSIM at the first and last ε of an attack's ok cells."""
    cells = [c for c in _cells_of(report, attack) if _eval(c, engine) is not None]
    if not cells:
        return None
    first, last = cells[0], cells[-1]
    ssim = getattr(last.perturbation, "ssim_mean", None)
    fe = eps_format(report)
    return (
        f"{attack_label(attack)}: accuracy {format_percent(_accuracy(_eval(first, engine)))} at "
        f"ε = {fe(first.epsilon)}, {format_percent(_accuracy(_eval(last, engine)))} "
        f"at ε = {fe(last.epsilon)} (mean SSIM {format_float(ssim)}, "
        f"{format_percent(_eval(last, engine).flip_rate)} of predictions flipped)."  # type: ignore[union-attr]
    )


def summary_section(report: AuditReport) -> Section:
    cfg, ds = report.config or {}, report.dataset or {}
    counts = ds.get("class_counts") or {}
    counts_text = ", ".join(f"{k}: {v}" for k, v in counts.items()) or MISSING
    blocks: list[Any] = [
        Para(
            [
                cell("Data "),
                code(ds.get("source") or ds.get("name")),
                cell(f", {ds.get('n_images', MISSING)} images ({counts_text}). Attacks: "
                     f"{', '.join(cfg.get('attacks') or []) or MISSING}; loss "),
                code(cfg.get("loss") or ", ".join(cfg.get("losses") or []) or None),
                cell(f"; {cfg.get('steps', MISSING)} steps for iterative attacks; seed "
                     f"{cfg.get('seed', MISSING)}."),
            ]
        )
    ]  # fmt: skip
    classes = _classes(report)
    for engine in engines(report):
        clean = ok_eval(report.clean.get(engine))
        per = ", ".join(f"{n} {_class_accuracy(clean, k)}" for k, n in enumerate(classes))
        on = "" if engine == SOURCE_ENGINE else f" on {engine}"
        parts = [
            cell(f"Clean accuracy{on}: "),
            Cell(format_percent(_accuracy(clean)), strong=True),
            cell(f" {_ci(clean)} ({per or MISSING})."),
        ]
        blocks.append(Para(parts))
        lines = [[cell(x)] for a in _attacks(report) if (x := _summary_line(report, a, engine))]
        if lines:
            blocks.append(Bullets(lines))
    blocks += cell_warnings(report)  # side effects that cost no measurement
    return Section("summary", "Summary", blocks)


def _series(report: AuditReport, key: str) -> list[Series]:
    """Accuracy: one line per attack x engine group (agreeing engines drawn once); SSIM: one
    per attack (engine-independent)."""
    groups = engine_groups(report)
    leads = [g.lead for g in groups] if key == "accuracy" else [SOURCE_ENGINE]
    out = []
    for i, attack in enumerate(_attacks(report)):
        for j, engine in enumerate(leads):
            points, intervals = [], []
            for c in _cells_of(report, attack):
                ev = _eval(c, engine)
                if ev is None:
                    continue
                if key == "accuracy":
                    y = _accuracy(ev)
                    ci = (ev.ci or {}).get("accuracy")
                    if ci is not None and ci.low is not None and ci.high is not None:
                        intervals.append((c.epsilon, ci.low, ci.high))
                else:
                    y = getattr(c.perturbation, "ssim_mean", None)
                if y is not None:
                    points.append((c.epsilon, y))
            if not points:
                continue
            label = attack_label(attack)
            if key == "accuracy" and len(groups) > 1:
                label += f" · {groups[j].label}"
            out.append(Series(label, points, intervals, **style(i, j)))
    return out


def _legend(report: AuditReport, key: str) -> list[Series]:
    attacks = [attack_label(a) for a in _attacks(report)]
    return legend(attacks, engine_groups(report) if key == "accuracy" else None)


def _params(report: AuditReport, attack: str) -> str:
    params = next((c.params for c in _cells_of(report, attack) if c.params), {})
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in _PER_EPS_PARAMS)


def _accuracy_rows(report: AuditReport, attack: str, engine: str, n: int) -> list[list[Cell]]:
    fe, fl = eps_format(report), linf_format(report)
    rows = []
    for c in _cells_of(report, attack):
        ev = _eval(c, engine)
        if ev is None:
            rows.append([cell(fe(c.epsilon)), cell("error"), *[cell(None)] * (5 + n)])
            continue
        pert = c.perturbation
        rows.append(
            [
                cell(fe(c.epsilon)),
                Cell(format_percent(_accuracy(ev)), num=True),
                Cell(_ci(ev), num=True),
                *(Cell(_class_accuracy(ev, k), num=True) for k in range(n)),
                Cell(format_percent(ev.flip_rate), num=True),
                Cell(format_percent(ev.success_rate), num=True),
                Cell(fl(getattr(pert, "linf_max", None)), num=True),
                Cell(format_float(getattr(pert, "l2_mean", None)), num=True),
            ]
        )
    return rows


def accuracy_section(report: AuditReport) -> Section:
    classes = _classes(report)
    x_ticks = ordered(c.epsilon for c in report.cells)
    chart = Chart(
        "accuracy",
        "Accuracy vs ε",
        "Bars: percentile bootstrap CI over images.",
        _series(report, "accuracy"),
        "ε (L∞ budget, [0, 1] pixel scale)",
        "accuracy (%)",
        x_ticks,
        format_x=eps_format(report),
        legend=_legend(report, "accuracy"),
    )
    header = ["ε", "Accuracy", _level(report), *(f"Acc. {n}" for n in classes)]
    header += ["Flipped", "Success rate", "L∞ max", "L2 mean"]
    blocks: list[Any] = [chart]
    groups = engine_groups(report)
    many = sum(len(g.members) for g in groups) > 1
    for attack in _attacks(report):
        params = _params(report, attack)

        def rows_of(engine: str, attack: str = attack) -> list[list[Cell]]:
            return _accuracy_rows(report, attack, engine, len(classes))

        tables = collapse(groups, rows_of) if groups else [(SOURCE_ENGINE, [])]
        for engine, same in tables:  # one table for engines whose rows read the same
            title = [cell(attack_label(attack))]
            if many:
                title += [cell(" on "), code(engine)]
                title += [cell(f" · same for: {', '.join(same)}")] if same else []
            table = Table(header, rows_of(engine), title=title)
            blocks += (
                [table] if not params else [table, Para([cell(f"Parameters: {params}")], note=True)]
            )
    return Section("accuracy", "Accuracy vs ε", blocks)


def ssim_section(report: AuditReport) -> Section:
    attacks = _attacks(report)
    chart = Chart(
        "ssim",
        "Mean SSIM (adversarial vs clean) vs ε",
        "SSIM of each adversarial image against its clean image.",
        _series(report, "ssim_mean"),
        "ε (L∞ budget, [0, 1] pixel scale)",
        "SSIM",
        ordered(c.epsilon for c in report.cells),
        fraction=False,
        format_x=eps_format(report),
        legend=_legend(report, "ssim_mean"),
    )
    by_key = {(c.attack, c.epsilon): c for c in report.cells}
    rows = []
    for eps in ordered(c.epsilon for c in report.cells):
        row = [cell(eps_format(report)(eps))]
        for attack in attacks:
            c = by_key.get((attack, eps))
            pert = c.perturbation if c is not None and c.status == Status.OK else None
            row += [
                Cell(format_float(getattr(pert, "ssim_mean", None)), num=True),
                Cell(format_float(getattr(pert, "ssim_min", None)), num=True),
            ]
        rows.append(row)
    header = ["ε", *(f"{attack_label(a)} {w}" for a in attacks for w in ("mean", "min"))]
    return Section("ssim", "SSIM vs ε", [chart, Table(header, rows)])


def sections(report: AuditReport) -> list[Section]:
    return [summary_section(report), accuracy_section(report), ssim_section(report)]
