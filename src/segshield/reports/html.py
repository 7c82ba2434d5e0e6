"""Self-contained HTML rendering of an audit report: a pure function of the report.

One file, no external resources: inline CSS, inline SVG charts, image panels inlined as
base64 ``data:`` URIs, and a Content-Security-Policy that forbids any fetch or script. Every
text from the report is HTML-escaped. Values are formatted as in the Markdown report
(fractions as percent with two decimals, ε in 1/255 steps, "—" for a missing value); the
renderer computes no statistic.

Sections (stable ids for tests and links): ``verdict`` (first), ``summary``, ``curves``,
``panels``, ``engines``, ``transfer``, ``failed-cells``, ``provenance``.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from segshield.audits.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval
from segshield.reports.format import (
    MISSING,
    format_epsilon,
    format_float,
    format_percent,
    format_points,
)
from segshield.reports.markdown import (
    TABLE_I_ROWS,
    _default_loss,
    _engines,
    _largest_cells,
    _metric,
    _ok,
    _ordered,
)
from segshield.reports.svg import DASHES, MARKERS, PALETTE, Series, line_chart

SECTION_IDS = (
    "verdict",
    "summary",
    "curves",
    "panels",
    "engines",
    "transfer",
    "failed-cells",
    "provenance",
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_LISTED = 8
_MAX_FAILURES_SHOWN = 20

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

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
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.93em; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; max-width: 620px; }
tr:nth-child(even) td { background: #fafbfc; }
.ci { color: var(--muted); font-size: 0.88em; margin-left: 3px; }
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
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr));
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


# ----------------------------------------------------------------------------- helpers


def _e(value: Any) -> str:
    """Escaped text; None as the missing mark."""
    return MISSING if value is None else escape(str(value), quote=True)


def _plain(value: Any) -> str:
    """A number with six significant digits, other values as text (escaped)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return f"{value:.6g}"


def _code(value: Any) -> str:
    return MISSING if value is None else f"<code>{_e(value)}</code>"


def _td(content: str, cls: str = "") -> str:
    return f'<td class="{cls}">{content}</td>' if cls else f"<td>{content}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """`header` texts are escaped here; `rows` hold ready HTML (``<td>`` elements or text)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(status: Any, ok_words: Sequence[str] = ("ok", "pass")) -> str:
    text = str(status) if status is not None else "unknown"
    kind = "ok" if text.lower() in ok_words else ("warn" if text == "unavailable" else "bad")
    return f'<span class="badge {kind}">{escape(text)}</span>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


def _attack_label(attack: str) -> str:
    return attack.upper()


def _percent_bounds(ci: Any) -> str | None:
    """``[91.0, 95.1]`` from a stored CI entry, or None when it has no bounds."""
    if not isinstance(ci, dict):
        return None
    low, high = ci.get("low"), ci.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    return f"[{low * 100:.1f}, {high * 100:.1f}]"


def _ci_title(ci: dict) -> str:
    level = ci.get("level")
    n_boot = ci.get("n_boot")
    what = f"{level * 100:g}% " if isinstance(level, (int, float)) else ""
    boot = f" ({n_boot} bootstrap resamples)" if n_boot is not None else ""
    return f"{what}bootstrap confidence interval over images{boot}"


def _with_ci(text: str, ev: EngineEval | None, key: str) -> str:
    """`text` followed by the engine's stored CI for `key`, when there is one."""
    ci = ((ev.ci or {}) if ev is not None else {}).get(key)
    bounds = _percent_bounds(ci)
    if bounds is None or text == MISSING:
        return escape(text)
    return f'{escape(text)}<span class="ci" title="{escape(_ci_title(ci))}">{bounds}</span>'


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings -> dotted keys with plain-text values (not yet escaped)."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for key in value:
            out += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return out or [(prefix, "{}")]
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        items = [_raw(v) for v in value]
        if len(items) > _MAX_LISTED:
            return [(prefix, f"{len(items)} items: {', '.join(items[:_MAX_LISTED])}, …")]
        return [(prefix, ", ".join(items) if items else MISSING)]
    if isinstance(value, list):
        return [(prefix, json.dumps(value, sort_keys=True, separators=(",", ":")))]
    return [(prefix, _raw(value))]


def _raw(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return MISSING if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _kv_table(data: dict | None) -> str:
    if not data:
        return '<p class="note">Not recorded.</p>'
    rows = [[_code(k), _td(escape(v), "wrap")] for k, v in _flatten(data)]
    return _table(["Key", "Value"], rows)


def _generic_table(data: Any) -> str:
    """Any JSON-like value as a table: list of dicts, dict of dicts, dict, else JSON text."""
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        keys = _ordered(k for d in data for k in d)
        rows = [[_td(_plain(d.get(k)), _num_cls(d.get(k))) for k in keys] for d in data]
        return _table([str(k) for k in keys], rows)
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        keys = _ordered(k for v in data.values() for k in v)
        rows = [
            [_code(name), *(_td(_plain(v.get(k)), _num_cls(v.get(k))) for k in keys)]
            for name, v in data.items()
        ]
        return _table(["", *(str(k) for k in keys)], rows)
    if isinstance(data, dict):
        return _kv_table(data)
    return f"<pre>{_e(json.dumps(data, sort_keys=True, indent=2, default=str))}</pre>"


def _num_cls(value: Any) -> str:
    return "num" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


# ----------------------------------------------------------------------------- sections


def _title(report: AuditReport) -> str:
    m = report.model or {}
    model = m.get("name") or m.get("factory") or m.get("source") or "model"
    dataset = report.dataset.get("name") or report.dataset.get("source") or "dataset"
    split = report.dataset.get("split")
    on = f"{dataset} ({split})" if split else str(dataset)
    return f"segshield audit: {model} on {on}"


def _header(report: AuditReport) -> str:
    prov = report.provenance or {}
    facts = []
    when = prov.get("finished_at") or prov.get("started_at") or prov.get("started")
    if when:
        facts.append(f"finished {when}")
    version = prov.get("segshield") or (prov.get("versions") or {}).get("segshield")
    if version:
        facts.append(f"segshield {version}")
    n_images = report.dataset.get("n_images")
    if n_images is not None:
        facts.append(f"{n_images} images")
    if report.engines:
        facts.append("engines: " + ", ".join(e.name for e in report.engines))
    links = "".join(
        f'<a href="#{sid}">{escape(sid.replace("-", " ").capitalize())}</a>' for sid in SECTION_IDS
    )
    return (
        f"<header>\n<h1>{_e(_title(report))}</h1>\n"
        f'<p class="meta">{_e(" · ".join(facts))}</p>\n<nav>{links}</nav>\n</header>'
    )


def _rule_row(o: dict) -> list[str]:
    op = "≥" if o.get("bound") == "min" else "≤"
    return [
        _e(o.get("rule")),
        _badge("pass" if o.get("passed") is True else "fail"),
        _code(o.get("metric")),
        _td(_plain(o.get("worst_value")), "num"),
        _td(f"{escape(op)} {_plain(o.get('threshold'))}", "num"),
        _e(o.get("worst_where")),
        _td(_plain(o.get("n_checked")), "num"),
        _e(o.get("reason")),
    ]


def _failure_details(o: dict) -> str:
    failures = [f for f in o.get("failures") or [] if isinstance(f, dict)]
    if not failures:
        return ""
    items = []
    for f in failures[:_MAX_FAILURES_SHOWN]:
        value = f.get("value")
        text = f"{_e(f.get('where'))}: {_plain(value)}"
        if f.get("reason"):
            text += f" ({_e(f.get('reason'))})"
        items.append(f"<li>{text}</li>")
    more = len(failures) - _MAX_FAILURES_SHOWN
    if more > 0:
        items.append(f"<li>… and {more} more</li>")
    return (
        f"<details><summary>{_e(o.get('rule'))}: {len(failures)} failing "
        f'measurement(s)</summary><ul class="failures">{"".join(items)}</ul></details>'
    )


def _section_verdict(report: AuditReport) -> str:
    verdict = report.verdict
    if not isinstance(verdict, dict):
        body = (
            '<div class="banner none"><span class="word">NO VERDICT</span>'
            "No gate policy was applied to this audit.</div>"
        )
        return _section("verdict", "Verdict", body)
    passed = verdict.get("passed") is True
    outcomes = [o for o in verdict.get("outcomes") or [] if isinstance(o, dict)]
    failed = [o for o in outcomes if o.get("passed") is not True]
    word, cls = ("PASS", "pass") if passed else ("FAIL", "fail")
    body = [
        f'<div class="banner {cls}" data-verdict="{word}"><span class="word">{word}</span>'
        f"Policy <code>{_e(verdict.get('policy_name'))}</code>: "
        f"{len(outcomes) - len(failed)} of {len(outcomes)} rules passed.</div>"
    ]
    header = ["Rule", "Result", "Metric", "Measured (worst)", "Threshold", "Where"]
    header += ["Checked", "Reason"]
    units = (
        '<p class="note">Measured values and thresholds are plain fractions, in the units of '
        "the policy file.</p>"
    )
    if failed:
        body += [
            "<h3>Failed rules</h3>",
            units,
            _table(header, [_rule_row(o) for o in failed], "failed-rules"),
            *(_failure_details(o) for o in failed),
        ]
    if outcomes:
        title = "All rules" if failed else "Rules checked"
        table = _table(header, [_rule_row(o) for o in outcomes], "all-rules")
        if failed:
            body.append(f"<details><summary>{title} ({len(outcomes)})</summary>{table}</details>")
        else:
            body += [f"<h3>{title}</h3>", units, table]
    return _section("verdict", "Verdict", "\n".join(body))


def _section_summary(report: AuditReport) -> str:
    loss = _default_loss(report)
    cells = _largest_cells(report, loss)
    engines = _engines(report)
    intro = (
        f'<p class="note">Clean inputs, then each attack at its largest ε with loss '
        f"<code>{_e(loss)}</code>. Fractions in percent"
        + (
            "; a bracket is the stored bootstrap confidence interval (hover for its level)"
            if _has_ci(report)
            else ""
        )
        + ".</p>"
    )
    if not engines:
        return _section("summary", "Summary per engine", intro + "<p>No engine was evaluated.</p>")
    header = ["Metric", "Clean"]
    for cell in cells:
        failed = "" if cell.status == "ok" else " (failed)"
        header.append(f"{_attack_label(cell.attack)} ε={format_epsilon(cell.epsilon)}{failed}")
    parts = [intro]
    for engine in engines:
        columns = [report.clean.get(engine)]
        columns += [c.engines.get(engine) if c.status == "ok" else None for c in cells]
        rows = []
        for label, key, fmt in TABLE_I_ROWS:
            row = [escape(label)]
            for ev in columns:
                if ev is not None and ev.status != "ok":
                    # Evaluated but failed on this engine: say so, not just "—".
                    cell = f'<span class="badge bad" title="{_e(ev.error)}">error</span>'
                else:
                    cell = _with_ci(fmt(_metric(ev, key)), _ok(ev), key)
                row.append(_td(cell, "num"))
            rows.append(row)
        source = " (source)" if engine == SOURCE_ENGINE else ""
        parts.append(
            f'<div class="engine-table"><h3><code>{_e(engine)}</code>{source}</h3>'
            f"{_table(header, rows, 'table-i')}</div>"
        )
    body = f'{intro}<div class="engine-tables">{"".join(parts[1:])}</div>'
    return _section("summary", "Summary per engine (Table I)", body)


def _curve_series(
    report: AuditReport,
    value: Callable[[AuditCell | None, str], float | None],
    per_engine: bool,
    ci_key: str | None = None,
) -> list[Series]:
    """One series per attack x loss (x engine), colour by attack, dash and marker by engine.
    `value(cell, engine)` reads one stored value (cell None: the clean evaluation); `ci_key`
    names the stored confidence interval drawn as error bars around it."""
    engines = _engines(report) if per_engine else [""]
    pairs = _ordered((c.attack, c.loss) for c in report.cells)
    many_losses = len({loss for _, loss in pairs}) > 1
    series = []
    for i, (attack, loss) in enumerate(pairs):
        cells = sorted(
            (c for c in report.cells if c.attack == attack and c.loss == loss),
            key=lambda c: c.epsilon,
        )
        sources: list[AuditCell | None] = [None, *cells]
        for j, engine in enumerate(engines):
            points: list[tuple[float, float | None]] = []
            intervals: list[tuple[float, float, float]] = []
            for cell in sources:
                y = value(cell, engine)
                if y is None:
                    continue
                x = 0.0 if cell is None else cell.epsilon
                points.append((x, y))
                if ci_key is None:
                    continue
                ev = report.clean.get(engine) if cell is None else cell.engines.get(engine)
                ci = ((ev.ci or {}) if ev is not None else {}).get(ci_key)
                if isinstance(ci, dict):
                    low, high = _number(ci.get("low")), _number(ci.get("high"))
                    if low is not None and high is not None:
                        intervals.append((x, low, high))
            label = _attack_label(attack) + (f" · {loss}" if many_losses else "")
            if per_engine:
                label += f" · {engine}"
            series.append(
                Series(
                    label=label,
                    points=points,
                    intervals=intervals,
                    color=PALETTE[i % len(PALETTE)],
                    dash=DASHES[j % len(DASHES)],
                    marker=MARKERS[j % len(MARKERS)],
                )
            )
    return series


def _has_ci(report: AuditReport) -> bool:
    evals = [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]
    return any(ev.ci for ev in evals)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _section_curves(report: AuditReport) -> str:
    if not report.cells:
        return _section("curves", "ε curves", "<p>No attack cells.</p>")

    def engine_metric(key: str) -> Callable[[AuditCell | None, str], Any]:
        def read(cell: AuditCell | None, engine: str) -> float | None:
            if cell is None:
                return _number(_metric(report.clean.get(engine), key))
            if cell.status != "ok":
                return None
            return _number(_metric(cell.engines.get(engine), key))

        return read

    def attack_success(cell: AuditCell | None, engine: str) -> float | None:
        if cell is None or cell.status != "ok":
            return None
        ev = _ok(cell.engines.get(engine))
        return _number(ev.attack_success) if ev else None

    def ssim(cell: AuditCell | None, engine: str) -> float | None:
        if cell is None or cell.status != "ok":
            return None
        return _number((cell.perturbation or {}).get("ssim_mean"))

    x_ticks = [0.0, *sorted({c.epsilon for c in report.cells})]
    bars = " Bars: stored bootstrap confidence intervals." if _has_ci(report) else ""
    charts = (
        ("dice", "Dice", engine_metric("dice"), True, True, "dice", "ε = 0 is clean." + bars),
        ("iou", "IoU", engine_metric("iou"), True, True, "iou", "ε = 0 is clean." + bars),
        (
            "attack-success",
            "Attack success",
            attack_success,
            True,
            True,
            "attack_success",
            "(Dice clean − Dice adversarial) / Dice clean on each engine." + bars,
        ),
        (
            "ssim",
            "SSIM (adversarial vs clean image)",
            ssim,
            False,
            True,
            None,
            "Mean SSIM of the perturbed images; one line per attack (engine-independent).",
        ),
        (
            "pixel-error",
            "Pixel error (L2)",
            engine_metric("pixel_error_l2"),
            True,
            False,
            None,
            "L2 distance between binary label and prediction, √(FP+FN) per image, mean over "
            "images; ε = 0 is clean.",
        ),
    )
    figures = []
    for slug, name, read, per_engine, fraction, ci_key, note in charts:
        series = _curve_series(report, read, per_engine, ci_key)
        svg = line_chart(
            series,
            title=f"{name} vs ε",
            x_label="ε (L∞ budget, in 1/255 steps)",
            y_label=name.split(" (")[0] + (" (%)" if fraction else ""),
            format_x=format_epsilon,
            format_y=format_percent if fraction else format_float,
            x_ticks=x_ticks,
            y_scale=100.0 if fraction else 1.0,
            y_bounds=(0.0, 1.0) if fraction else None,
        )
        figures.append(
            f'<figure class="chart-box" id="curve-{slug}"><figcaption>{escape(name)} vs ε'
            f'</figcaption><p class="note">{escape(note)}</p>{svg}</figure>'
        )
    intro = (
        '<p class="note">Colour: attack; line style and marker: engine. Engines that agree '
        "exactly draw on top of each other. Failed cells are left out of their line; hover a "
        "point for its value.</p>"
    )
    body = f'{intro}<div class="charts">{"".join(figures)}</div>'
    return _section("curves", "ε curves", body)


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


def _panel_figure(cell: AuditCell, panel: dict, base_dir: Path | None) -> str:
    columns = panel.get("columns")
    titles = ""
    if isinstance(columns, list) and columns:
        spans = "".join(f"<span>{_e(c)}</span>" for c in columns)
        titles = (
            f'<div class="tiles" style="grid-template-columns: repeat({len(columns)}, 1fr)">'
            f"{spans}</div>"
        )
    caption = (
        f"<strong>{_e(_attack_label(cell.attack))}</strong> "
        f"ε={_e(format_epsilon(cell.epsilon))} · image <code>{_e(panel.get('image'))}"
        f"</code> · Dice {_e(format_percent(panel.get('dice_clean')))} → "
        f"{_e(format_percent(panel.get('dice_adv')))}"
    )
    return (
        f'<figure class="panel">{titles}{_panel_image(base_dir, panel.get("file"))}'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _section_panels(report: AuditReport, base_dir: Path | None) -> str:
    cells = [c for c in report.cells if c.panels]
    if not cells:
        return _section("panels", "Image panels", "<p>No image panels in this report.</p>")
    parts = [
        '<p class="note">The images each cell hit hardest, as stored by the audit; Dice is per '
        "image (source engine), clean → adversarial. Each attack's largest ε is shown; smaller "
        "ε are folded (click to open).</p>"
    ]
    pairs = _ordered((c.attack, c.loss) for c in cells)
    for attack, loss in pairs:
        group = sorted(
            (c for c in cells if (c.attack, c.loss) == (attack, loss)),
            key=lambda c: -c.epsilon,
        )
        for k, cell in enumerate(group):
            figures = [_panel_figure(cell, p, base_dir) for p in cell.panels if isinstance(p, dict)]
            title = (
                f"{_e(_attack_label(cell.attack))} ε={_e(format_epsilon(cell.epsilon))}, "
                f"loss <code>{_e(cell.loss)}</code>"
            )
            if k == 0:
                parts += [f"<h3>{title}</h3>", *figures]
                continue
            plural = "" if len(figures) == 1 else "s"
            parts.append(
                f'<details class="panels"><summary>{title} ({len(figures)} panel{plural})'
                f"</summary>{''.join(figures)}</details>"
            )
    return _section("panels", "Image panels", "\n".join(parts))


def _section_engines(report: AuditReport) -> str:
    if not report.engines:
        return _section("engines", "Engines", "<p>No engine records.</p>")
    rows = []
    for e in report.engines:
        sha = e.sha256
        sha_html = (
            f'<code title="{_e(sha)}">{_e(sha[:12])}…</code>'
            if isinstance(sha, str) and len(sha) > 12
            else _code(sha)
        )
        rows.append(
            [
                _code(e.name) + (" (source)" if e.name == SOURCE_ENGINE else ""),
                _e(e.kind),
                _e(e.precision),
                _e(", ".join(e.providers)) if e.providers else MISSING,
                _badge(e.status),
                _e(e.reason),
                _td(_plain(e.build_seconds), "num"),
                _td(_e(e.artifact), "wrap"),
                sha_html,
            ]
        )
    header = ["Engine", "Kind", "Precision", "Providers used", "Status", "Note"]
    header += ["Build (s)", "Artifact", "SHA-256"]
    parts = [_table(header, rows)]
    notes = [(e.name, n) for e in report.engines for n in (e.notes or [])]
    if notes:
        parts.append(
            "<h3>Engine notes</h3><ul>"
            + "".join(f"<li>{_code(name)}: {_e(note)}</li>" for name, note in notes)
            + "</ul>"
        )
    parity = {e.name: e.parity for e in report.engines if isinstance(e.parity, dict)}
    parts.append("<h3>Parity with the source engine</h3>")
    if parity:
        parts.append(_generic_table(parity))
    else:
        parts.append('<p class="note">No parity check recorded.</p>')
    latency = getattr(report, "latency", None)
    if latency is None:
        latency = (report.provenance or {}).get("latency")
    if latency:
        parts += ["<h3>Latency</h3>", _generic_table(latency)]
    return _section("engines", "Engines", "\n".join(parts))


def _section_transfer(report: AuditReport) -> str:
    targets = [e for e in _engines(report) if e != SOURCE_ENGINE]
    if not targets:
        body = "<p>No engine besides the source was evaluated.</p>"
        return _section("transfer", "Engine transfer", body)
    intro = (
        f"<p class=\"note\">Dice gap: the engine's Dice minus <code>{SOURCE_ENGINE}</code>'s on "
        "the same inputs, in percentage points; disagreement: share of pixels whose prediction "
        "differs from it.</p>"
    )
    sources: list[tuple[AuditCell | None, dict[str, EngineEval], bool]] = [
        (None, report.clean, True)
    ]
    sources += [(c, c.engines, c.status == "ok") for c in report.cells]
    rows = []
    for cell, evals, ok in sources:
        where = (
            ["clean", MISSING, "0"]
            if cell is None
            else [_attack_label(cell.attack), cell.loss, format_epsilon(cell.epsilon)]
        )
        for engine in targets:
            ev = _ok(evals.get(engine)) if ok else None
            rows.append(
                [
                    *(_e(w) for w in where),
                    _code(engine),
                    _td(escape(format_percent(_metric(ev, "dice"))), "num"),
                    _td(escape(format_points(ev.dice_gap if ev else None)), "num"),
                    _td(escape(format_percent(ev.disagreement if ev else None)), "num"),
                    _td(escape(format_float(ev.transfer_ratio if ev else None)), "num"),
                    _td(escape(format_percent(ev.fooled_source_only if ev else None)), "num"),
                    _td(escape(format_percent(ev.fooled_engine_only if ev else None)), "num"),
                ]
            )
    header = ["Attack", "Loss", "ε", "Engine", "Dice", "Dice gap", "Disagreement"]
    header += ["Transfer ratio", "Fooled source only", "Fooled engine only"]
    table = _table(header, rows)
    return _section("transfer", "Engine transfer", intro + table)


def _section_failures(report: AuditReport) -> str:
    rows = []
    for engine, ev in report.clean.items():
        if ev.status != "ok":
            rows.append([_code("clean"), _code(engine), _td(_e(ev.error), "wrap")])
    for cell in report.cells:
        if cell.status != "ok":
            rows.append([_code(cell.id), "all", _td(_e(cell.error), "wrap")])
            continue
        for engine, ev in cell.engines.items():
            if ev.status != "ok":
                rows.append([_code(cell.id), _code(engine), _td(_e(ev.error), "wrap")])
    if not rows:
        return _section("failed-cells", "Failed cells", "<p>None: every cell ran.</p>")
    return _section("failed-cells", "Failed cells", _table(["Cell", "Engine", "Error"], rows))


def _section_provenance(report: AuditReport) -> str:
    parts = []
    for title, data in (
        ("Run", report.provenance),
        ("Model", report.model),
        ("Dataset", report.dataset),
        ("Audit configuration", report.config),
    ):
        parts += [f"<h3>{escape(title)}</h3>", _kv_table(data)]
    parts.append(
        f'<p class="note">Report kind <code>{_e(report.kind)}</code>, schema version '
        f"{_e(report.schema_version)}.</p>"
    )
    return _section("provenance", "Provenance", "\n".join(parts))


def _units_note() -> str:
    return (
        '<p class="note">Fractions are shown as percent with two decimals; the Dice gap in '
        "percentage points; loss and pixel errors as plain values; ε in 1/255 steps; "
        f"{MISSING} marks a missing value.</p>"
    )


def render_html(report: AuditReport, base_dir: Path | None = None) -> str:
    """The report as one self-contained HTML page.

    base_dir: the report's folder; image panels (``cell.panels[i]["file"]``, relative to it)
    are read from there and inlined. Without it, or when a file is missing, the panel shows a
    visible "missing image" note instead.
    """
    body = [
        _header(report),
        "<main>",
        _section_verdict(report),
        _units_note(),
        _section_summary(report),
        _section_curves(report),
        _section_panels(report, Path(base_dir) if base_dir is not None else None),
        _section_engines(report),
        _section_transfer(report),
        _section_failures(report),
        _section_provenance(report),
        "</main>",
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(_title(report))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
