"""Rendering of a release comparison (:mod:`segshield.results.comparison`): a Markdown
pull-request comment and a self-contained HTML page. Computes nothing: the rows, changes,
significance and missing lists are the comparison's; values are formatted as in the reports
(fractions in percent, changes in signed percentage points, ε in k/255 steps, "—" missing).
Report text (model, engine, attack names) is escaped for Markdown or HTML.
"""

from __future__ import annotations

from html import escape

from segshield.reports.format import (
    MISSING,
    format_epsilon,
    format_float,
    format_percent,
    format_points,
)
from segshield.reports.html import _CSP, _CSS
from segshield.reports.markdown import escape_markdown
from segshield.results.comparison import ComparisonRow, ReleaseComparison, ReportRef

DROP, RISE = "▼ significant drop", "▲ significant rise"
ROW_HEADER = (
    "Row",
    "Engine",
    "ε",
    "Dice base",
    "Dice new",
    "Δ Dice",
    "Significance",
    "Δ attack success",
    "Δ per-image Dice",
)
LATENCY_HEADER = ("Engine", "Batch size", "Base median (ms)", "New median (ms)", "Δ (ms)")
_SIGNIFICANCE_NOTE = (
    "A Dice change is significant when the two bootstrap intervals of Dice do not overlap "
    "(the new high below the base low: a drop; the new low above the base high: a rise); rows "
    "without both intervals are never significant. Δ = new − base, in percentage points."
)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def headline(cmp: ReleaseComparison) -> str:
    """The verdict-like first line: drops, improvements and ids in one report only."""
    s = cmp.summary
    return (
        f"{_plural(s.regressions, 'significant Dice drop')}, "
        f"{_plural(s.improvements, 'improvement')}, "
        f"{_plural(s.only_in_one, 'cell')} only in one report"
    )


def _ref(label: str, ref: ReportRef) -> str:
    def short(digest: str | None) -> str:
        return digest[:12] if digest else MISSING

    return (
        f"{label}: model {ref.model or MISSING}, weights {short(ref.weights_sha256)}, "
        f"data {short(ref.data_sha256)}, started {ref.started_at or MISSING}"
    )


def _sort_key(row: ComparisonRow) -> tuple[int, float]:
    change = row.change("dice")
    return (1, 0.0) if change is None else (0, change)


def _row_cells(row: ComparisonRow) -> list[str]:
    dice = row.metrics.get("dice")
    label = "clean" if row.kind == "clean" else f"{row.attack}/{row.loss}"
    if row.base_status != "ok" or row.new_status != "ok":
        label += f" (base {row.base_status}, new {row.new_status})"
    mark = DROP if row.regression else RISE if row.improvement else ""
    if not mark and (row.base_dice_ci is None or row.new_dice_ci is None):
        mark = "no interval"
    return [
        label,
        row.engine,
        format_epsilon(row.epsilon) if row.kind != "clean" else MISSING,
        format_percent(dice.base if dice else None),
        format_percent(dice.new if dice else None),
        format_points(row.change("dice")),
        mark or MISSING,
        format_points(row.change("attack_success")),
        format_points(row.change("dice_per_image_mean")),
    ]


def _rows(cmp: ReleaseComparison) -> list[list[str]]:
    return [_row_cells(r) for r in sorted(cmp.rows, key=_sort_key)]


def _missing(cmp: ReleaseComparison) -> list[tuple[str, list[str]]]:
    m = cmp.missing
    lists = [
        ("Cells only in base", m.cells_only_in_base),
        ("Cells only in new", m.cells_only_in_new),
        ("Worst cases only in base", m.worst_cases_only_in_base),
        ("Worst cases only in new", m.worst_cases_only_in_new),
        ("Engines only in base", [f"{s.id} on {s.engine}" for s in m.engines_only_in_base]),
        ("Engines only in new", [f"{s.id} on {s.engine}" for s in m.engines_only_in_new]),
        ("Failed cells in base", m.failed_in_base),
        ("Failed cells in new", m.failed_in_new),
        ("Latency only in base", m.latency_only_in_base),
        ("Latency only in new", m.latency_only_in_new),
    ]
    return [(title, items) for title, items in lists if items]


def _latency(cmp: ReleaseComparison) -> list[list[str]]:
    return [
        [
            x.engine,
            str(x.batch_size),
            format_float(x.base_ms),
            format_float(x.new_ms),
            MISSING if x.change_ms is None else f"{x.change_ms:+.4g}",
        ]
        for x in cmp.latency
    ]


def _md_table(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(escape_markdown(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_comparison_markdown(cmp: ReleaseComparison) -> str:
    """A pull-request comment: the headline, both reports, the rows sorted by Dice change
    (largest drop first), what is in one report only, and latency."""
    lines = [f"**segshield compare: {headline(cmp)}**", ""]
    lines += [f"- {escape_markdown(_ref(label, ref))}" for label, ref in _refs(cmp)]
    lines += [f"- note: {escape_markdown(n)}" for n in cmp.notes]
    lines += ["", "### Rows by Dice change", "", escape_markdown(_SIGNIFICANCE_NOTE), ""]
    lines += _md_table(ROW_HEADER, _rows(cmp)) if cmp.rows else ["No row in both reports.", ""]
    missing = _missing(cmp)
    lines += ["### In one report only", ""]
    if not missing:
        lines += ["Nothing: both reports have the same cells, engines and worst cases.", ""]
    for title, items in missing:
        lines.append(f"- {title}: " + ", ".join(escape_markdown(i) for i in items))
    lines += ["", "### Latency", ""]
    lines += _md_table(LATENCY_HEADER, _latency(cmp)) if cmp.latency else ["Not in both.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _refs(cmp: ReleaseComparison) -> list[tuple[str, ReportRef]]:
    return [("Base", cmp.base), ("New", cmp.new)]


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _html_table(header: tuple[str, ...], rows: list[list[str]], mark_col: int = -1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cls = ""
        if mark_col >= 0 and row[mark_col] in (DROP, RISE):
            cls = ' class="drop"' if row[mark_col] == DROP else ' class="rise"'
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_EXTRA_CSS = "tr.drop td { background: #fdecea; } tr.rise td { background: #e7f4ea; }"


def render_comparison_html(cmp: ReleaseComparison) -> str:
    """The comparison as one self-contained HTML page (no external resource, no script)."""
    refs = "".join(f"<li>{_e(_ref(label, ref))}</li>" for label, ref in _refs(cmp))
    notes = "".join(f"<li>note: {_e(n)}</li>" for n in cmp.notes)
    rows = (
        _html_table(ROW_HEADER, _rows(cmp), ROW_HEADER.index("Significance"))
        if cmp.rows
        else "<p>No row in both reports.</p>"
    )
    missing = "".join(
        f"<li>{_e(title)}: {_e(', '.join(items))}</li>" for title, items in _missing(cmp)
    )
    latency = _html_table(LATENCY_HEADER, _latency(cmp)) if cmp.latency else "<p>Not in both.</p>"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        "<title>segshield release comparison</title>\n"
        f"<style>{_CSS}{_EXTRA_CSS}</style>\n</head>\n<body>\n"
        f'<h1>segshield release comparison</h1>\n<p class="headline"><strong>'
        f"{_e(headline(cmp))}</strong></p>\n<ul>{refs}{notes}</ul>\n"
        f'<section id="rows"><h2>Rows by Dice change</h2>\n<p class="note">'
        f"{_e(_SIGNIFICANCE_NOTE)}</p>\n{rows}</section>\n"
        f'<section id="missing"><h2>In one report only</h2>\n'
        f"{f'<ul>{missing}</ul>' if missing else '<p>Nothing.</p>'}</section>\n"
        f'<section id="latency"><h2>Latency</h2>\n{latency}</section>\n'
        "</body>\n</html>\n"
    )
