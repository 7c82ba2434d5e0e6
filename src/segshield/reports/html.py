"""Self-contained HTML rendering of an audit report: the lay-out of :func:`build_view`.

One file, no external resources: inline CSS, inline SVG charts, image panels inlined as
base64 ``data:`` URIs, one small fixed inline script that sorts a table when its header is
clicked, and a Content-Security-Policy that forbids any fetch and any script but that one
(allowed by its hash). Every text is HTML-escaped here. Values come formatted from the view
(the same strings as in the Markdown report); this module computes nothing. Wide tables
scroll inside their own box, so the page itself never scrolls sideways.

Sections carry stable ids (``view.SECTION_IDS``): the first screen is ``verdict``, ``health``
and ``matrix`` (engine x attack x ε); then the task's own (``summary``, ``curves``,
``per-image``, ``per-class``, ``panels`` ... for segmentation; ``summary``, ``accuracy``,
``ssim`` for a classifier), ``engines``, ``transfer``, ``failed-cells``, ``provenance``.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path
from typing import Any

from segshield.reports.format import MISSING, format_epsilon, format_float, format_percent
from segshield.reports.svg import line_chart
from segshield.reports.view import (
    CLASSIFIER_SECTION_IDS,
    CORE_SECTION_IDS,
    SECTION_IDS,
    Banner,
    Block,
    Bullets,
    Cell,
    Chart,
    PanelGroup,
    PanelView,
    Para,
    ReportView,
    Section,
    Table,
    build_view,
)
from segshield.results import AuditReport

__all__ = ["CLASSIFIER_SECTION_IDS", "CORE_SECTION_IDS", "SECTION_IDS", "render_html"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Sorts a table.sortable by the clicked column: numbers by value, text alphabetically, empty
# keys (a missing value) last in both directions; a second click reverses. Fixed text, no
# report data inside: the CSP allows exactly this script by its hash.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  function key(row, col) {
    var c = row.cells[col], k = c.getAttribute("data-sort");
    return k === null ? c.textContent.trim() : k;
  }
  function sortBy(th, col) {
    var asc = th.getAttribute("aria-sort") !== "ascending";
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var nx = Number(x), ny = Number(y), d;
      d = isFinite(nx) && isFinite(ny) ? nx - ny : x.localeCompare(y);
      return asc ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  heads.forEach(function (th, col) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th, col); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(th, col); } });
  });
});
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'"
)

_CSS = """
:root { --pass: #1e7e34; --fail: #b3261e; --muted: #5f6b76; --line: #c8ccd2; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Sans", "DejaVu Sans", sans-serif; color: #1d232a; background: #fff; margin: 0 auto;
  max-width: 1200px; padding: 24px 28px 64px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 1.05em; margin: 20px 0 8px; }
p.meta, p.note, .muted { color: var(--muted); }
p.note { font-size: 0.92em; margin: 6px 0 10px; }
nav { margin: 8px 0 0; font-size: 0.92em; }
nav a { color: #0b5cad; text-decoration: none; margin-right: 14px; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 0.9em; }
p, li, h1, h2, h3, .meta { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; margin: 6px 0 14px; }
.scroll > table { margin: 0; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.93em; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; max-width: 620px; }
td > code { white-space: nowrap; }
td.wrap > code { white-space: normal; }
tr:nth-child(even) td { background: #fafbfc; }
.ci { color: var(--muted); font-size: 0.88em; margin-left: 3px; }
.sub { display: block; color: var(--muted); font-size: 0.82em; }
table.matrix td.num { min-width: 5.5em; }
table.matrix tr:has(> td:first-child:not(:empty)) > td { border-top: 2px solid #8a949e; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th::after { content: " ↕"; color: #9aa3ab; font-weight: normal; }
table.sortable th[aria-sort="ascending"]::after { content: " ↑"; color: #1d232a; }
table.sortable th[aria-sort="descending"]::after { content: " ↓"; color: #1d232a; }
.banner { border-radius: 6px; padding: 14px 18px; margin: 18px 0 12px; border-left: 10px solid; }
.banner .word { font-size: 1.8em; font-weight: 700; letter-spacing: 0.04em; margin-right: 14px; }
.banner.pass { background: #e7f4ea; border-color: var(--pass); color: #0f4d22; }
.banner.fail { background: #fdecea; border-color: var(--fail); color: #7a1712; }
.banner.none { background: #f1f3f5; border-color: #8a949e; color: #333; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 0.85em;
  font-weight: 600; }
.badge.ok { background: #e7f4ea; color: #0f4d22; }
.badge.bad { background: #fdecea; color: #7a1712; }
.badge.warn { background: #fff4e0; color: #7a4b00; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(460px, 100%), 1fr));
  gap: 18px; }
.engine-tables { display: flex; flex-wrap: wrap; gap: 8px 32px; align-items: flex-start; }
figure { margin: 0; }
figure.chart-box { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px 8px 4px;
  background: #fff; }
figure.chart-box figcaption { font-weight: 600; margin: 2px 4px 6px; }
figure.chart-box p.note { margin: 0 4px 6px; font-weight: normal; }
svg.chart { display: block; width: 100%; height: auto; font-family: inherit; }
svg.chart .tick { font-size: 11px; fill: #333; }
svg.chart .axis-title { font-size: 12px; fill: #222; }
svg.chart .legend { font-size: 11.5px; fill: #222; }
svg.chart .nodata { font-size: 14px; fill: var(--muted); }
figure.panel { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px; margin: 0 0 14px;
  max-width: 980px; }
details.panels { margin: 4px 0; }
details.panels[open] { margin-bottom: 14px; }
details.panels > summary { font-weight: 600; padding: 3px 0; }
figure.panel img { display: block; width: 100%; height: auto; image-rendering: pixelated; }
.tiles { display: grid; gap: 0 0.5%; font-size: 0.85em; color: var(--muted); text-align: center;
  margin-bottom: 3px; }
figure.panel figcaption { margin-top: 6px; }
.missing { border: 2px dashed var(--fail); color: var(--fail); padding: 14px; font-weight: 600;
  background: #fff7f6; }
details { margin: 6px 0 12px; }
summary { cursor: pointer; color: #0b5cad; }
ul.failures { margin: 4px 0; padding-left: 20px; }
@media print { nav { display: none; } section { break-inside: avoid-page; } }
"""


def _e(value: object) -> str:
    """Escaped text; None as the missing mark."""
    return MISSING if value is None else escape(str(value), quote=True)


_BADGES = {"ok": "ok", "bad": "bad", "warn": "warn"}


def _inline(c: Cell) -> str:
    text = _e(c.text)
    if c.badge:
        title = f' title="{_e(c.title)}"' if c.title else ""
        return f'<span class="badge {_BADGES.get(c.badge, "bad")}"{title}>{text}</span>'
    if c.code:
        title = f' title="{_e(c.title)}"' if c.title else ""
        text = f"<code{title}>{text}</code>"
    if c.strong:
        text = f"<strong>{text}</strong>"
    if c.ci:
        text += f'<span class="ci" title="{_e(c.title or "")}">{_e(c.ci)}</span>'
    if c.title and not (c.badge or c.code or c.ci):
        text = f'<span title="{_e(c.title)}">{text}</span>'
    if c.sub:
        text += f'<span class="sub">{_e(c.sub)}</span>'
    return text


def _parts(parts: list[Cell]) -> str:
    return "".join(_inline(c) for c in parts)


def _td(c: Cell) -> str:
    cls = "num" if c.num else ("wrap" if len(c.text) > 40 else "")
    attr = f' class="{cls}"' if cls else ""
    if c.sort is not None:
        attr += f' data-sort="{_e(c.sort)}"'
    return f"<td{attr}>{_inline(c)}</td>"


def _table(table: Table) -> str:
    title = f"<h3>{_parts(table.title)}</h3>" if table.title else ""
    if not table.rows:
        return f'{title}<p class="note">Not recorded.</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in table.rows)
    classes = " ".join(c for c in (table.cls, "sortable" if table.sortable else "") if c)
    attr = f' class="{classes}"' if classes else ""
    html = (
        f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
    if table.folded:
        label = _parts(table.title) if table.title else "Table"
        return f"<details><summary>{label}</summary>{html}</details>"
    return title + html


def _chart(chart: Chart) -> str:
    vs = f" vs {chart.x_name}"
    name = chart.title if chart.title.endswith(vs) else chart.title + vs
    default_x = format_epsilon if chart.x_name == "ε" else format_float
    svg = line_chart(
        chart.series,
        title=name,
        x_label=chart.x_label,
        y_label=chart.y_label,
        format_x=chart.format_x or default_x,
        format_y=format_percent if chart.fraction else format_float,
        x_ticks=chart.x_ticks,
        y_scale=100.0 if chart.fraction else 1.0,
        y_bounds=(0.0, 1.0) if chart.fraction else None,
        legend=chart.legend,
    )
    return (
        f'<figure class="chart-box" id="curve-{_e(chart.slug)}"><figcaption>{_e(name)}'
        f'</figcaption><p class="note">{_e(chart.note)}</p>{svg}</figure>'
    )


def _panel_image(base_dir: Path | None, file: Any) -> str:
    """The panel PNG as an ``<img>`` with a data URI, or a visible note saying why not."""
    if not isinstance(file, str) or not file:
        return '<div class="missing">missing image: the panel names no file</div>'
    if base_dir is None:
        return (
            f'<div class="missing">missing image: <code>{_e(file)}</code> '
            "(no report folder was given to read it from)</div>"
        )
    root = Path(base_dir).resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        return (
            f'<div class="missing">image refused: <code>{_e(file)}</code> is outside the '
            "report folder</div>"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f'<div class="missing">missing image: <code>{_e(file)}</code> ({_e(why)})</div>'
    if not data.startswith(_PNG_SIGNATURE):
        return f'<div class="missing">missing image: <code>{_e(file)}</code> is not a PNG</div>'
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{_e(file)}" loading="eager">'


def _panel(panel: PanelView, base_dir: Path | None) -> str:
    titles = ""
    if panel.columns:
        spans = "".join(f"<span>{_e(c)}</span>" for c in panel.columns)
        style = f"grid-template-columns: repeat({len(panel.columns)}, 1fr)"
        titles = f'<div class="tiles" style="{style}">{spans}</div>'
    return (
        f'<figure class="panel">{titles}{_panel_image(base_dir, panel.file)}'
        f"<figcaption>{_parts(panel.caption)}</figcaption></figure>"
    )


def _panels(group: PanelGroup, base_dir: Path | None) -> str:
    figures = "".join(_panel(p, base_dir) for p in group.panels)
    title = _parts(group.title)
    if not group.folded:
        return f"<h3>{title}</h3>{figures}"
    plural = "" if len(group.panels) == 1 else "s"
    return (
        f'<details class="panels"><summary>{title} ({len(group.panels)} panel{plural})'
        f"</summary>{figures}</details>"
    )


def _block(block: Block, base_dir: Path | None) -> str:
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Para):
        return (
            f'<p class="note">{_parts(block.parts)}</p>'
            if block.note
            else f"<p>{_parts(block.parts)}</p>"
        )
    if isinstance(block, Bullets):
        items = "".join(f"<li>{_parts(item)}</li>" for item in block.items)
        cls = ' class="failures"' if block.summary else ""
        listing = f"<ul{cls}>{items}</ul>"
        if block.summary:
            return f"<details><summary>{_e(block.summary)}</summary>{listing}</details>"
        return listing
    if isinstance(block, Chart):
        return _chart(block)
    return _panels(block, base_dir)


def _banner(banner: Banner) -> str:
    data = f' data-verdict="{_e(banner.word)}"' if banner.kind != "none" else ""
    return (
        f'<div class="banner {_e(banner.kind)}"{data}><span class="word">{_e(banner.word)}</span>'
        f"{_parts(banner.parts)}</div>"
    )


def _section(section: Section, base_dir: Path | None) -> str:
    parts = [_banner(section.banner)] if section.banner else []
    charts = [_block(b, base_dir) for b in section.blocks if isinstance(b, Chart)]
    others = [_block(b, base_dir) for b in section.blocks if not isinstance(b, Chart)]
    if charts:
        others.insert(
            1 if others and isinstance(section.blocks[0], Para) else 0,
            f'<div class="charts">{"".join(charts)}</div>',
        )
    body = "\n".join(parts + others)
    return f'<section id="{section.id}">\n<h2>{_e(section.title)}</h2>\n{body}\n</section>'


def _header(view: ReportView) -> str:
    links = "".join(
        f'<a href="#{sid}">{escape(sid.replace("-", " ").capitalize())}</a>'
        for sid in view.section_ids
    )
    return (
        f"<header>\n<h1>{_e(view.title)}</h1>\n"
        f'<p class="meta">{_e(" · ".join(view.facts))}</p>\n<nav>{links}</nav>\n</header>'
    )


def render_html(report: AuditReport, base_dir: Path | None = None) -> str:
    """The report as one self-contained HTML page, for every task.

    base_dir: the report's folder; image panels (``panel.file``, relative to it) are read
    from there and inlined. Without it, or when a file is missing, the panel shows a visible
    "missing image" note instead.
    """
    view = build_view(report)
    base = Path(base_dir) if base_dir is not None else None
    sections = [_section(s, base) for s in view.sections]
    sections.insert(1, f'<p class="note">{_e(view.units)}</p>')
    sortable = any(isinstance(b, Table) and b.sortable for s in view.sections for b in s.blocks)
    script = f"<script>{SORT_SCRIPT}</script>\n" if sortable else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(view.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + _header(view)
        + "\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n"
        + script
        + "</body>\n</html>\n"
    )
