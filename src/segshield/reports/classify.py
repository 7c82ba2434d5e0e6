"""Markdown and HTML rendering of a classifier audit: pure functions of the report.

They show the seed paper's two figures (accuracy vs ε, SSIM vs ε; seed mammography, Figs. 9-12)
as tables, and in HTML also as inline SVG line charts. Units as in the segmentation report:
fractions as percent with two decimals, ε in 1/255 steps where it is one, L∞ in 1/255 steps,
"—" for a missing value. The renderers compute no statistic: every number is read from the
report (:class:`segshield.audits.classify.ClassifierAuditReport`, or its ``to_dict()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from segshield.reports.format import (
    MISSING,
    format_epsilon,
    format_float,
    format_percent,
    format_steps,
)
from segshield.reports.svg import DASHES, MARKERS, PALETTE, Series, line_chart

if TYPE_CHECKING:
    from segshield.audits.classify import ClassifierAuditReport, ClassifierCell

__all__ = ["CLASSIFIER_SECTION_IDS", "render_classifier_html", "render_classifier_markdown"]

CLASSIFIER_SECTION_IDS = ("summary", "accuracy", "ssim", "skipped", "failed-cells", "provenance")

_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, "DejaVu Sans",
  sans-serif; color: #1d232a; margin: 0 auto; max-width: 1100px; padding: 24px 28px 64px;
  line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 32px 0 10px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 1.05em; margin: 18px 0 8px; }
p.note, .muted { color: #5f6b76; }
code { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.93em; }
th, td { border: 1px solid #c8ccd2; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: #5f6b76; font-size: 0.88em; margin-left: 3px; }
figure.chart-box { margin: 0 0 12px; border: 1px solid #e3e6ea; border-radius: 6px;
  padding: 8px; max-width: 600px; }
figure.chart-box figcaption { font-weight: 600; margin: 2px 4px 6px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart .tick { font-size: 11px; fill: #333; }
svg.chart .axis-title { font-size: 12px; fill: #222; }
svg.chart .legend { font-size: 11.5px; fill: #222; }
"""


# ----------------------------------------------------------------------------------- shared


def _as_report(report: ClassifierAuditReport | dict) -> ClassifierAuditReport:
    if isinstance(report, dict):
        # Imported here: the audit module imports torch, the renderers need not.
        from segshield.audits.classify import ClassifierAuditReport

        return ClassifierAuditReport.from_dict(report)
    return report


def _ci_text(ci: Any) -> str:
    """``[94.12%, 100.00%]`` from a stored CI, or the missing mark."""
    if not isinstance(ci, dict) or ci.get("low") is None or ci.get("high") is None:
        return MISSING
    return f"[{format_percent(ci['low'])}, {format_percent(ci['high'])}]"


def _ci_level(report: ClassifierAuditReport) -> str:
    ci = report.clean.get("accuracy_ci")
    level = ci.get("level") if isinstance(ci, dict) else None
    return f"{level * 100:g}% CI" if isinstance(level, (int, float)) else "CI"


def _classes(report: ClassifierAuditReport) -> list[str]:
    classes = report.dataset.get("classes")
    if isinstance(classes, list):
        return [str(c) for c in classes]
    return list((report.clean.get("per_class_accuracy") or {}).keys())


def _per_class(cell_or_clean: Any, name: str) -> str:
    per = (
        cell_or_clean.get("per_class_accuracy")
        if isinstance(cell_or_clean, dict)
        else cell_or_clean.per_class_accuracy
    )
    return format_percent((per or {}).get(name))


def _ok(cell: ClassifierCell) -> bool:
    return cell.status == "ok"


def _epsilons(report: ClassifierAuditReport) -> list[float]:
    return list(dict.fromkeys(c.epsilon for c in report.cells))


def _cell(report: ClassifierAuditReport, attack: str, eps: float) -> ClassifierCell | None:
    return next((c for c in report.cells if c.attack == attack and c.epsilon == eps), None)


def _accuracy_rows(report: ClassifierAuditReport, attack: str) -> list[list[str]]:
    """Rows of one attack's accuracy table: plain texts (escaped by the caller's format)."""
    classes = _classes(report)
    rows = []
    for c in report.cells_of(attack):
        if not _ok(c):
            rows.append([format_epsilon(c.epsilon), "error", *[MISSING] * (4 + len(classes))])
            continue
        rows.append(
            [
                format_epsilon(c.epsilon),
                format_percent(c.accuracy),
                _ci_text(c.accuracy_ci),
                *[_per_class(c, name) for name in classes],
                format_percent(c.flip_rate),
                format_steps(c.linf_max),
                format_float(c.l2_mean),
            ]
        )
    return rows


def _accuracy_header(report: ClassifierAuditReport) -> list[str]:
    return [
        "ε",
        "Accuracy",
        _ci_level(report),
        *[f"Acc. {name}" for name in _classes(report)],
        "Flipped",
        "L∞ max",
        "L2 mean",
    ]


def _ssim_rows(report: ClassifierAuditReport) -> list[list[str]]:
    rows = []
    for eps in _epsilons(report):
        row = [format_epsilon(eps)]
        for attack in report.attacks:
            c = _cell(report, attack, eps)
            ok = c is not None and _ok(c)
            row.append(format_float(c.ssim_mean) if ok else MISSING)
            row.append(format_float(c.ssim_min) if ok else MISSING)
        rows.append(row)
    return rows


def _ssim_header(report: ClassifierAuditReport) -> list[str]:
    return ["ε", *[f"{a.upper()} {w}" for a in report.attacks for w in ("mean", "min")]]


def _summary_line(report: ClassifierAuditReport, attack: str) -> str | None:
    """Accuracy and SSIM at the first and last ε of an attack's stored cells (plain text)."""
    cells = [c for c in report.cells_of(attack) if _ok(c)]
    if not cells:
        return None
    first, last = cells[0], cells[-1]
    return (
        f"{attack.upper()}: accuracy {format_percent(first.accuracy)} at ε = "
        f"{format_epsilon(first.epsilon)}, {format_percent(last.accuracy)} at ε = "
        f"{format_epsilon(last.epsilon)} (mean SSIM {format_float(last.ssim_mean)}, "
        f"{format_percent(last.flip_rate)} of predictions flipped)."
    )


# Attack parameters that change with ε are in report.json, not in the one-line summary.
_PER_EPS_PARAMS = ("eps", "alpha", "eps_linf_equivalent")


def _params_text(report: ClassifierAuditReport, attack: str) -> str:
    """The attack's stored parameters that do not depend on ε, as ``k=v, ...``."""
    params = next((c.params for c in report.cells_of(attack) if c.params), {})
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in _PER_EPS_PARAMS)


def _model_name(report: ClassifierAuditReport) -> str:
    return str(report.model.get("name") or report.model.get("class") or "model")


# --------------------------------------------------------------------------------- Markdown


def _md_text(value: Any) -> str:
    """A table-safe cell: no newlines, no unescaped pipes."""
    if value is None or value == "":
        return MISSING
    return " ".join(str(value).split()).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_text(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_text(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def render_classifier_markdown(report: ClassifierAuditReport | dict) -> str:
    """The report as Markdown: summary, accuracy vs ε per attack (with its bootstrap CI),
    SSIM vs ε (mean and min per attack), skipped attacks, failed cells, provenance."""
    r = _as_report(report)
    cfg, ds, prov = r.config, r.dataset, r.provenance
    counts = ds.get("class_counts") or {}
    out = [
        f"# segshield classifier audit: {_md_text(_model_name(r))}",
        "",
        f"Data: `{_md_text(ds.get('source'))}`, {_md_text(ds.get('n_images'))} images "
        f"({', '.join(f'{_md_text(k)}: {_md_text(v)}' for k, v in counts.items()) or MISSING}). "
        f"Attacks: {_md_text(', '.join(cfg.get('attacks', [])))}; loss "
        f"`{_md_text(cfg.get('loss'))}`; {_md_text(cfg.get('steps'))} steps for iterative "
        f"attacks; seed {_md_text(cfg.get('seed'))}.",
        "",
        f"Clean accuracy: **{format_percent(r.clean.get('accuracy'))}** "
        f"{_ci_text(r.clean.get('accuracy_ci'))} ("
        + ", ".join(f"{_md_text(n)} {_per_class(r.clean, n)}" for n in _classes(r))
        + ").",
        "",
    ]
    lines = [line for a in r.attacks if (line := _summary_line(r, a))]
    out += [f"- {line}" for line in lines]
    if lines:
        out.append("")
    out += [
        "Units: accuracy, flipped share and per-class accuracy in percent; ε and L∞ in 1/255 "
        "steps where exact; L2 in pixel units; CI: percentile bootstrap over images.",
        "",
        "## Accuracy vs ε",
        "",
    ]
    for attack in r.attacks:
        out += [f"### {attack.upper()}", ""]
        shown = _params_text(r, attack)
        if shown:
            out += [f"Parameters: {_md_text(shown)}", ""]
        out += _md_table(_accuracy_header(r), _accuracy_rows(r, attack))
    out += ["## SSIM vs ε", "", "SSIM of each adversarial image against its clean image.", ""]
    out += _md_table(_ssim_header(r), _ssim_rows(r))
    if r.skipped:
        out += ["## Skipped attacks", ""]
        out += _md_table(
            ["Attack", "Reason"], [[s.get("attack"), s.get("reason")] for s in r.skipped]
        )
    failed = [c for c in r.cells if not _ok(c)]
    if failed:
        out += ["## Failed cells", ""]
        out += _md_table(["Cell", "Error"], [[c.id, c.error] for c in failed])
    out += ["## Provenance", ""]
    out += _md_table(
        ["Key", "Value"],
        [[k, prov[k]] for k in sorted(prov)] + [["dataset sha256", ds.get("sha256")]],
    )
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------- HTML


def _e(value: Any) -> str:
    return MISSING if value is None else escape(str(value), quote=True)


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: int = 1) -> str:
    """Plain-text `header` and `rows` (escaped here); columns from `numeric` on align right."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(v)}</td>' if j >= numeric else f"<td>{_e(v)}</td>"
            for j, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


def _series(r: ClassifierAuditReport, key: str, with_ci: bool) -> list[Series]:
    out = []
    for i, attack in enumerate(r.attacks):
        cells = [c for c in r.cells_of(attack) if _ok(c)]
        intervals = []
        if with_ci:
            for c in cells:
                ci = c.accuracy_ci or {}
                if ci.get("low") is not None and ci.get("high") is not None:
                    intervals.append((c.epsilon, ci["low"], ci["high"]))
        out.append(
            Series(
                label=attack.upper(),
                points=[(c.epsilon, getattr(c, key)) for c in cells],
                intervals=intervals,
                color=PALETTE[i % len(PALETTE)],
                dash=DASHES[i % len(DASHES)],
                marker=MARKERS[i % len(MARKERS)],
            )
        )
    return out


def _chart(r: ClassifierAuditReport, key: str, title: str, y_label: str, ci: bool) -> str:
    svg = line_chart(
        _series(r, key, ci),
        title=title,
        x_label="ε (L∞ budget, [0, 1] pixel scale)",
        y_label=y_label,
        format_x=format_epsilon,
        format_y=format_percent if key == "accuracy" else format_float,
        x_ticks=_epsilons(r),
        y_scale=100.0 if key == "accuracy" else 1.0,
        y_unit="%" if key == "accuracy" else "",
        y_bounds=(0.0, 1.0),
    )
    return f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>{svg}</figure>'


def render_classifier_html(report: ClassifierAuditReport | dict) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script, a CSP that
    forbids every fetch): two line charts (accuracy vs ε with CI bars, mean SSIM vs ε) and the
    tables of :func:`render_classifier_markdown`. Every text from the report is escaped."""
    r = _as_report(report)
    ds, cfg = r.dataset, r.config
    counts = ds.get("class_counts") or {}
    title = f"segshield classifier audit: {_model_name(r)}"
    per_class = ", ".join(f"{n} {_per_class(r.clean, n)}" for n in _classes(r))
    counts_text = ", ".join(f"{k}: {v}" for k, v in counts.items()) or MISSING
    summary = [
        f"<p>Data <code>{_e(ds.get('source'))}</code>: {_e(ds.get('n_images'))} images ("
        f"{_e(counts_text)}). Attacks {_e(', '.join(cfg.get('attacks', [])))}, loss <code>"
        f"{_e(cfg.get('loss'))}</code>, {_e(cfg.get('steps'))} steps, seed {_e(cfg.get('seed'))}."
        "</p>",
        f"<p>Clean accuracy <strong>{_e(format_percent(r.clean.get('accuracy')))}</strong>"
        f'<span class="ci">{_e(_ci_text(r.clean.get("accuracy_ci")))}</span> ({_e(per_class)}).'
        "</p>",
    ]
    lines = [line for a in r.attacks if (line := _summary_line(r, a))]
    if lines:
        summary.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>")
    acc_tables = "".join(
        f"<h3>{_e(a.upper())}</h3>"
        + (
            f'<p class="note">Parameters: {_e(_params_text(r, a))}</p>'
            if _params_text(r, a)
            else ""
        )
        + _html_table(_accuracy_header(r), _accuracy_rows(r, a))
        for a in r.attacks
    )
    sections = [
        _section("summary", "Summary", "\n".join(summary)),
        _section(
            "accuracy",
            "Accuracy vs ε",
            _chart(r, "accuracy", "Accuracy vs ε", "accuracy", ci=True)
            + '<p class="note">Bars: percentile bootstrap CI over images.</p>'
            + acc_tables,
        ),
        _section(
            "ssim",
            "SSIM vs ε",
            _chart(r, "ssim_mean", "Mean SSIM (adversarial vs clean) vs ε", "SSIM", ci=False)
            + _html_table(_ssim_header(r), _ssim_rows(r)),
        ),
    ]
    if r.skipped:
        rows = [[s.get("attack"), s.get("reason")] for s in r.skipped]
        sections.append(
            _section("skipped", "Skipped attacks", _html_table(["Attack", "Reason"], rows, 9))
        )
    failed = [c for c in r.cells if not _ok(c)]
    if failed:
        rows = [[c.id, c.error] for c in failed]
        sections.append(
            _section("failed-cells", "Failed cells", _html_table(["Cell", "Error"], rows, 9))
        )
    prov = [[k, r.provenance[k]] for k in sorted(r.provenance)]
    prov.append(["dataset sha256", ds.get("sha256")])
    sections.append(_section("provenance", "Provenance", _html_table(["Key", "Value"], prov, 9)))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )
