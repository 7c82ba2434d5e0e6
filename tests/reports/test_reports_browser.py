"""The HTML report in a real headless Chromium: every section is in the DOM after load, and
the page renders to a non-trivial screenshot. Skipped where no Chromium is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from segshield.reports.html import render_html
from segshield.results import AuditReport, Status

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
    engines = sum(e.status == Status.OK for e in report.engines)
    # Dice, IoU, attack success, pixel error: one line per attack x loss x engine; SSIM: per pair
    assert dom.count("<polyline") == 4 * pairs * engines + pairs
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
