"""HTML rendering: one self-contained, escaped page with every section, charts and panels."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from segshield.reports.format import format_percent
from segshield.reports.html import CORE_SECTION_IDS, SECTION_IDS, SORT_SCRIPT, render_html
from segshield.reports.view_overview import engine_groups
from segshield.results import SOURCE_ENGINE, AuditReport, Status

DATA = Path(__file__).parent / "data"
HOSTILE = "<script>alert('pwned')</script>"


def load(name: str) -> AuditReport:
    """report_pass.json: a real audit (scripts/make_report_fixtures.py: 3 ok engines and an
    unavailable one, fgsm and pgd with two losses at 2 ε, asma, CIs, panels, latency);
    report_fail.json: the same with a FAIL verdict, a failed cell with a hostile error, an
    engine evaluation error and a hostile image name."""
    return AuditReport.from_dict(json.loads((DATA / f"report_{name}.json").read_text()))


def write_panels(report: AuditReport, folder: Path) -> dict[str, bytes]:
    """A small real PNG for every panel file of `report`, under `folder`."""
    written = {}
    for i, panel in enumerate(p for c in report.cells for p in c.panels):
        path = folder / panel.file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 4), (i * 10 % 256, 80, 160)).save(path)
        written[panel.file] = path.read_bytes()
    return written


def section(html: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert match, f"section #{sid} missing"
    return match.group(1)


def chart(html: str, slug: str) -> str:
    match = re.search(rf'<figure class="chart-box" id="curve-{slug}">(.*?)</figure>', html, re.S)
    assert match, f"chart {slug} missing"
    return match.group(1)


def without_sort_script(html: str) -> str:
    """The page without its one fixed script (the sortable per-image table's); asserts that
    it is the only script and that the CSP allows exactly it, by its hash."""
    block = f"<script>{SORT_SCRIPT}</script>"
    assert html.count("<script") == 1 and html.count(block) == 1
    digest = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html
    assert "'unsafe-inline'" not in html.split("script-src", 1)[1].split('"', 1)[0]
    return html.replace(block, "")


def n_panels(report: AuditReport) -> int:
    return sum(len(c.panels) for c in report.cells)


def strip_ci_and_panels(report: AuditReport) -> AuditReport:
    """The report as the pipeline wrote it before CIs and panels existed."""
    report = copy.deepcopy(report)
    for ev in [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]:
        ev.ci = None
    for cell in report.cells:
        cell.panels = []
    return report


@pytest.mark.parametrize("name", ["pass", "fail"])
def test_every_section_in_order_with_verdict_first(name: str) -> None:
    html = render_html(load(name))
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids == [sid for sid in SECTION_IDS if sid in ids]
    assert set(CORE_SECTION_IDS) <= set(ids)
    assert {"losses", "targeted"} <= set(ids)  # two attack losses, the targeted asma
    assert ids[0] == "verdict"
    assert html.startswith("<!DOCTYPE html>")


def test_hostile_strings_are_escaped() -> None:
    html = without_sort_script(render_html(load("fail")))
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    assert "<b>here</b>" not in html
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in section(html, "failed-cells")
    assert "strict &lt;release&gt;" in section(html, "verdict")


def test_self_contained_no_network_references(tmp_path: Path) -> None:
    report = load("pass")
    write_panels(report, tmp_path)
    html = without_sort_script(render_html(report, tmp_path))
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"@import|url\(", html, re.I)
    assert all(v.startswith("data:image/png;base64,") for v in re.findall(r'src="([^"]*)"', html))
    assert all(v.startswith("#") for v in re.findall(r'href="([^"]*)"', html))
    assert "<link" not in html and "<script" not in html
    assert "default-src 'none'" in html  # the CSP forbids any fetch even if something slipped


def test_panels_are_inlined_as_data_uris(tmp_path: Path) -> None:
    report = load("pass")
    written = write_panels(report, tmp_path)
    html = render_html(report, tmp_path)
    panels = section(html, "panels")
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', panels)
    assert len(uris) == len(written) == n_panels(report) > 0
    assert {base64.b64decode(u) for u in uris} == set(written.values())
    assert "missing image" not in panels
    first = report.cells[0].panels[0]
    assert first.image in panels
    assert f"{format_percent(first.dice_clean)} → {format_percent(first.dice_adv)}" in panels
    assert "prediction: ort-fp32" in panels  # tile titles


def test_missing_panel_files_show_a_note(tmp_path: Path) -> None:
    report = load("pass")
    for base in (tmp_path, None):
        panels = section(render_html(report, base), "panels")
        assert panels.count('class="missing"') == n_panels(report)
        assert "data:image" not in panels
    # A file outside the report folder is never read, whatever the report says.
    outside = tmp_path / "outside.png"
    Image.new("RGB", (2, 2)).save(outside)
    report.cells[0].panels[0].file = "../outside.png"
    (tmp_path / "report").mkdir()
    panels = section(render_html(report, tmp_path / "report"), "panels")
    assert "outside the report folder" in panels


def test_report_without_ci_and_panels() -> None:
    html = render_html(strip_ci_and_panels(load("pass")))
    assert "No image panels in this report." in section(html, "panels")
    assert 'class="ci"' not in html
    assert 'class="interval"' not in html


def test_summary_shows_stored_values_and_ci() -> None:
    report = load("pass")
    summary = section(render_html(report), "summary")
    clean = report.clean["pytorch"]
    ci = clean.ci["dice"]
    expected = f'{format_percent(clean.metrics.dice)}<span class="ci"'
    assert expected in summary
    assert f"[{ci.low * 100:.1f}, {ci.high * 100:.1f}]" in summary
    assert "95% bootstrap confidence interval" in summary
    for header in ("FGSM ε=8/255", "PGD ε=8/255"):
        assert header in summary
    for label in ("Accuracy", "Loss", "Dice", "Mean IoU", "IoU", "Precision", "Recall"):
        assert f"<td>{label}</td>" in summary


def test_curves_have_one_polyline_per_series() -> None:
    report = load("pass")
    html = render_html(report)
    pairs = {(c.attack, c.loss) for c in report.cells}
    n_eps = {pair: sum((c.attack, c.loss) == pair for c in report.cells) for pair in pairs}
    groups = engine_groups(report)  # pytorch and ort-fp32 agree: drawn once
    assert [g.members for g in groups] == [("pytorch", "ort-fp32"), ("ort-int8",)]
    for slug, per_engine, clean_point in (
        ("dice", True, 1),  # attack x loss x engine group; clean + every epsilon
        ("iou", True, 1),
        ("attack-success", True, 0),  # no clean point
        ("ssim", False, 0),  # one per attack x loss: the perturbation is engine-independent
        ("pixel-error", True, 1),
    ):
        svg = chart(html, slug)
        assert "<svg" in svg and "</svg>" in svg
        polylines = re.findall(r'<polyline[^>]*points="([^"]+)"', svg)
        n_lines = len(groups) if per_engine else 1
        assert len(polylines) == len(pairs) * n_lines
        # a bounded legend: one colour per attack x loss, one line style per engine group
        n_keys = len(pairs) + (len(groups) if per_engine else 0)
        assert svg.count('class="legend-item"') == n_keys
        lengths = sorted(len(p.split()) for p in polylines)
        expected = sorted(n + clean_point for n in n_eps.values() for _ in range(n_lines))
        assert lengths == expected
        assert 'class="tick"' in svg and 'class="axis-title"' in svg
    dice = chart(html, "dice")
    assert 'data-series="PGD · bce · pytorch, ort-fp32 (agree)"' in dice
    assert 'data-series="PGD · bce · ort-int8"' in dice
    assert ">pytorch, ort-fp32 (agree)<title>" in dice and ">PGD · bce<title>" in dice
    assert 'class="interval"' in dice  # stored CIs as error bars


def test_failed_cell_leaves_its_line_shorter() -> None:
    html = render_html(load("fail"))
    svg = chart(html, "dice")
    pgd = re.search(r'data-series="PGD · bce · pytorch, ort-fp32 \(agree\)" points="([^"]+)"', svg)
    assert pgd and len(pgd.group(1).split()) == 2  # clean and 2/255: 8/255 failed


def test_verdict_fail_lists_failed_rules() -> None:
    report = load("fail")
    verdict = section(render_html(report), "verdict")
    assert 'data-verdict="FAIL"' in verdict
    failed = re.search(r'<table class="failed-rules">(.*?)</table>', verdict, re.S)
    assert failed
    rows = failed.group(1).split("<tr>")[2:]
    outcomes = [o for o in report.verdict["outcomes"] if not o["passed"]]
    assert len(rows) == len(outcomes) == 2
    worst = outcomes[0]["worst_value"]
    assert (f"{worst:.6g}" if worst is not None else "—") in rows[0] and "≥ 0.95" in rows[0]
    # the reasons follow the table, one full-width line per failed rule
    reasons = verdict.split("</table>", 1)[1].split("<details>", 1)[0]
    assert reasons.count("<li><strong>") == 2
    assert "<li><strong>every engine at 2/255</strong>: cannot be verified: engine" in reasons
    assert "engine tensorrt-fp16 was unavailable" in reasons and "unavailable" not in rows[1]


def test_verdict_pass_and_absent() -> None:
    assert 'data-verdict="PASS"' in section(render_html(load("pass")), "verdict")
    report = load("pass")
    report.verdict = None
    assert "NO VERDICT" in section(render_html(report), "verdict")


def test_engines_transfer_failures_provenance() -> None:
    report = load("fail")
    report.latency = [{"engine": "onnxruntime", "batch": 8, "p50_ms": 9.5}]  # a future field
    html = render_html(report)
    engines = section(html, "engines")
    assert "CPUExecutionProvider" in engines and "unavailable" in engines
    parity = report.engines[1].parity
    assert "<th>max |Δ prob|</th>" in engines and f"{parity['prob_max_abs_err']:.3g}" in engines
    # every stored field stays on the page, folded, keys as row labels (never as headers)
    assert "<code>prob_max_abs_err</code>" in engines
    assert f"{parity['prob_max_abs_err']:.6g}" in engines
    assert "Latency" in engines and "<th>p50 (ms)</th>" in engines and "9.5" in engines
    assert "<th>p50_ms</th>" not in engines
    transfer = section(html, "transfer")
    targets = [e.name for e in report.engines if e.status == Status.OK and e.name != SOURCE_ENGINE]
    rows = transfer.count("<tr><td")  # the largest ε per attack, then the rest (folded)
    assert rows == (1 + len(report.cells)) * len(targets)
    assert transfer.count("<details><summary>Smaller ε") == 1
    assert "+0.00 pp" in transfer
    failures = section(html, "failed-cells")
    failed = next(c for c in report.cells if c.status != Status.OK)
    assert failed.id in failures and "bad input &lt;b&gt;here&lt;/b&gt;" in failures
    summary = section(html, "summary")
    assert 'class="badge bad"' in summary  # FGSM 8/255 failed on ort-int8
    provenance = section(html, "provenance")
    assert "weights_sha256" in provenance and "Audit configuration" in provenance


def test_latency_has_human_headers_and_keeps_every_field() -> None:
    report = load("pass")
    engines = section(render_html(report), "engines")
    assert report.latency
    latency = re.search(r'<table class="latency">(.*?)</table>', engines, re.S)
    assert latency
    headers = re.findall(r"<th>([^<]*)</th>", latency.group(1))
    assert headers == ["Engine", "batch", "p50 (ms)", "p99 (ms)", "throughput (img/s)",
                       "speed-up vs pytorch", "Status"]  # fmt: skip
    first = report.latency[0]
    assert f'<td class="num">{first["median_ms"]:.4g}</td>' in latency.group(1)
    assert '<td class="num">1.00×</td>' in latency.group(1)  # the source against itself
    every = re.search(r'<table class="latency-fields">(.*?)</table>', engines, re.S)
    assert every and "<details>" in engines
    for key, value in first.items():
        if key != "engine":
            assert f"<code>{key}</code>" in every.group(1)
        if isinstance(value, float):
            assert f"{value:.6g}" in every.group(1)
    for raw in ("cuda_sync", "p999_ms", "throughput_ips"):
        assert f"<th>{raw}</th>" not in engines


def test_empty_report_renders_every_section() -> None:
    report = AuditReport(provenance={}, config={}, model={}, dataset={})
    html = render_html(report)
    assert re.findall(r'<section id="([^"]+)">', html) == list(CORE_SECTION_IDS)
    assert "No attack cells." in html


def test_render_is_deterministic_and_does_not_mutate(tmp_path: Path) -> None:
    report = load("fail")
    before = report.to_dict()
    assert render_html(report, tmp_path) == render_html(report, tmp_path)
    assert report.to_dict() == before
