"""The HTML report in a real headless Chromium: every section is in the DOM after load; the
first screen is the verdict then the engine x attack x ε matrix; the per-image table sorts
when a header is clicked; nothing is wider than the window at 1400 and 800 px (every folded
table opened); and the page renders to non-trivial screenshots at both widths (copied to
$SEGSHIELD_SCREENSHOT_DIR when set). Skipped where no Chromium is installed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from segshield.reports.format import format_epsilon
from segshield.reports.html import render_html
from segshield.reports.view_common import attack_label
from segshield.reports.view_overview import engine_groups
from segshield.results import AuditReport

DATA = Path(__file__).parent / "data"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium found (chromium, chromium-browser, google-chrome on PATH, or "
        "/usr/bin/chromium); on Debian: apt-get install -y chromium",
    ),
]


def run_chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture audit's report rendered to HTML, with small PNGs for its panels."""
    folder = tmp_path_factory.mktemp("html")
    report = AuditReport.from_dict(json.loads((DATA / "report_pass.json").read_text()))
    for i, panel in enumerate(p for c in report.cells for p in c.panels):
        path = folder / panel.file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 8), (30 + i * 9, 120, 200)).save(path)
    out = folder / "report.html"
    out.write_text(render_html(report, folder), encoding="utf-8")
    return out


def test_every_section_is_in_the_dom(page: Path, tmp_path: Path) -> None:
    report = AuditReport.from_dict(json.loads((DATA / "report_pass.json").read_text()))
    html = page.read_text(encoding="utf-8")
    result = run_chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "</html>" in dom
    for sid in re.findall(r'<section id="([^"]+)">', html):
        assert f'<section id="{sid}">' in dom, f"#{sid} missing from the DOM"
    pairs = len({(c.attack, c.loss) for c in report.cells})
    groups = len(engine_groups(report))  # engines that agree are drawn once
    # Dice, IoU, attack success, pixel error: one line per attack x loss x engine group; SSIM:
    # one per pair
    assert dom.count("<polyline") == 4 * pairs * groups + pairs
    assert dom.count('src="data:image/png;base64,') == sum(len(c.panels) for c in report.cells)


def test_page_renders_to_a_screenshot(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    result = run_chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri()
    )
    assert shot.is_file(), result.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        gray = image.convert("L")
        low, high = gray.getextrema()
        assert high - low > 100  # text and charts, not a blank page
        assert len(gray.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50


# Runs after the page's own script, on load: reads the first screen, clicks the per-image
# table's "Image" header twice, opens every folded block and measures the page's width; the
# results go into a <pre id="probe"> that --dump-dom returns.
PROBE = """
window.addEventListener("load", function () {
  function texts(cells) { return Array.prototype.map.call(cells, function (c) {
    return c.textContent; }); }
  var out = {}, first = document.querySelector("main > section");
  out.first = first ? first.id : null;
  out.banner = texts(document.querySelectorAll("#verdict .banner .word"));
  out.order = texts(document.querySelectorAll("main > section > h2"));
  var m = document.querySelector("section#matrix table.matrix");
  out.header = m ? texts(m.tHead.rows[0].cells) : null;
  out.rows = m ? Array.prototype.map.call(m.tBodies[0].rows, function (r) {
    return [r.cells[0].textContent, r.cells[1].textContent]; }) : null;
  var t = document.querySelector("section#per-image table.per-image.sortable");
  function column(i) { return texts(Array.prototype.map.call(t.tBodies[0].rows,
    function (r) { return r.cells[i].firstChild; })); }
  out.marks = texts(t.querySelectorAll("tbody td .sub"));
  out.before = column(1);
  var th = t.tHead.rows[0].cells[1];
  th.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  out.asc = column(1);
  out.aria = th.getAttribute("aria-sort");
  th.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  out.desc = column(1);
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  out.scrollWidth = document.documentElement.scrollWidth;
  out.innerWidth = window.innerWidth;
  out.wide = [];
  document.querySelectorAll("body *").forEach(function (e) {
    if (e.getBoundingClientRect().right > window.innerWidth + 0.5 && !e.closest(".scroll")) {
      out.wide.push(e.tagName + "." + e.className);
    }
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
"""
WIDTHS = (1400, 800)


def write_pages(report: AuditReport, folder: Path) -> tuple[Path, Path]:
    """The report's page (with small PNGs for its panels) and a copy with PROBE added, its
    hash added to the page's CSP."""
    for i, panel in enumerate(p for c in report.cells for p in c.panels):
        path = folder / panel.file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 16), (30 + i * 9, 120, 200)).save(path)
    html = render_html(report, folder)
    page = folder / "report.html"
    page.write_text(html, encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    assert html.count("script-src ") == 1
    probed = html.replace("script-src ", f"script-src 'sha256-{digest}' ")
    probe = folder / "probe.html"
    probe.write_text(probed.replace("</body>", f"<script>{PROBE}</script></body>"), "utf-8")
    return page, probe


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[AuditReport, Path, Path]]:
    """report_fail.json (a FAIL verdict, a failed cell, an engine error, three engines of which
    two agree) and report_multiclass.json (3 classes, an image without foreground, a stored
    worst case), each as (report, page, probed page)."""
    out = {}
    for name in ("fail", "multiclass"):
        report = AuditReport.from_dict(json.loads((DATA / f"report_{name}.json").read_text()))
        out[name] = (report, *write_pages(report, tmp_path_factory.mktemp(name)))
    return out


@pytest.mark.parametrize(("name", "width"), [("fail", 1400), ("fail", 800), ("multiclass", 800)])
def test_first_screen_sorting_and_no_overflow(
    pages: dict[str, tuple[AuditReport, Path, Path]], tmp_path: Path, name: str, width: int
) -> None:
    report, _, probe = pages[name]
    result = run_chromium(
        tmp_path / "profile", f"--window-size={width},2000", "--virtual-time-budget=5000",
        "--dump-dom", probe.as_uri(),
    )  # fmt: skip
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    out = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<"))
    # the first screen: the verdict, the engine health line when measured, then the matrix
    assert out["first"] == "verdict" and out["banner"] == ["FAIL"]
    health = ["Engine health"] if any(e.health for e in report.engines) else []
    assert out["order"][: 2 + len(health)] == ["Verdict", *health, "Dice: engine × attack × ε"]
    eps = sorted({c.epsilon for c in report.cells})
    assert out["header"] == ["Attack", "Engines", "Clean", *(f"ε={format_epsilon(e)}" for e in eps)]
    groups = [g.label for g in engine_groups(report)]
    assert groups[0] == "pytorch, ort-fp32 (agree)" and len(groups) == 2
    attacks = list(dict.fromkeys(attack_label(c.attack) for c in report.cells))
    attacks = (["Worst case (per-image mean)"] if report.evaluation else []) + attacks
    assert out["rows"] == [[a if k == 0 else "", g] for a in attacks for k, g in enumerate(groups)]
    # the per-image table starts worst first and sorts by the clicked header
    names = report.dataset["names"]
    assert sorted(out["before"]) == sorted(names) and out["before"] != sorted(names)
    if name == "multiclass":  # no Dice without foreground: last, and marked
        assert out["before"][-1] == "slice_03" and out["marks"] == ["empty truth"]
    assert out["asc"] == sorted(names) and out["aria"] == "ascending"
    assert out["desc"] == sorted(names, reverse=True)
    # nothing wider than the window, every folded table open; wide tables scroll in their box
    assert out["innerWidth"] == width
    assert out["scrollWidth"] <= out["innerWidth"], out["wide"]
    assert out["wide"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_screenshots_at_both_widths(
    pages: dict[str, tuple[AuditReport, Path, Path]], tmp_path: Path, width: int
) -> None:
    _, page, _ = pages["fail"]
    shot = tmp_path / f"report-{width}.png"
    result = run_chromium(
        tmp_path / "profile", f"--screenshot={shot}", f"--window-size={width},2000", page.as_uri()
    )
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (width, 2000)
        rgb = image.convert("RGB")
        gray = rgb.convert("L")
        low, high = gray.getextrema()
        assert high - low > 100  # text and tables, not a blank page
        assert len(gray.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
        # the FAIL banner's red edge (#b3261e) is on the first screen
        top = rgb.crop((0, 0, width, 700)).getcolors(maxcolors=1 << 20) or []
        red = sum(n for n, c in top if abs(c[0] - 0xB3) + abs(c[1] - 0x26) + abs(c[2] - 0x1E) < 30)
        assert red > 500
    target = os.environ.get("SEGSHIELD_SCREENSHOT_DIR")
    if target:  # for a person to look at
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


@pytest.mark.parametrize("name", ["slices", "volumes"])
def test_medical_reports_do_not_overflow(
    request: pytest.FixtureRequest, tmp_path: Path, name: str
) -> None:
    """The real audits of tests/reports/conftest.py (slices of the bundled lesion volumes:
    HD95 columns and curve, the per-volume table; whole 3-D volumes) at 800 px, every folded
    block open: nothing wider than the window."""
    report, _ = request.getfixturevalue(f"{name}_audit")
    _, probe = write_pages(report, tmp_path / "page")
    result = run_chromium(
        tmp_path / "profile", "--window-size=800,2000", "--virtual-time-budget=5000",
        "--dump-dom", probe.as_uri(),
    )  # fmt: skip
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    out = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<"))
    expected = ["Per image", "Per volume"] if name == "slices" else ["Per image"]
    assert [t for t in out["order"] if t.startswith("Per ")] == expected
    assert 'id="curve-hd95"' in result.stdout
    assert out["innerWidth"] == 800
    assert out["scrollWidth"] <= out["innerWidth"], out["wide"]
    assert out["wide"] == []
