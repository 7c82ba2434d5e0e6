"""Every renderer escapes every user-provided string (image names, model names and classes,
engine reasons and notes, error messages, paths, policy and rule names): a hostile name
reaches no viewer as HTML or Markdown markup, and no spreadsheet as a formula."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from segshield.reports import (
    render_csv,
    render_html,
    render_junit,
    render_markdown,
    render_pr_summary,
)
from segshield.reports.markdown import escape_markdown
from segshield.results import AuditReport

DATA = Path(__file__).parent / "data"
NAME = "<img src=x onerror=alert(1)>|*a*"
FORMULA = '=HYPERLINK("http://x")'


def _hostile() -> AuditReport:
    raw = json.loads((DATA / "report_fail.json").read_text())
    raw["model"]["name"] = NAME
    raw["model"]["class"] = NAME
    raw["model"]["weights"] = f"/models/{NAME}.safetensors"
    raw["dataset"]["source"] = NAME
    raw["dataset"]["names"] = [f"{NAME}{i}" for i in range(raw["dataset"]["n_images"])]
    raw["provenance"]["command"] = f"segshield audit --data {NAME}"
    for engine in raw["engines"]:
        engine["notes"] = [*engine.get("notes", []), f"note {NAME}"]
        if engine["status"] != "ok":
            engine["reason"] = f"{NAME} not installed"
    for cell in raw["cells"]:
        for panel in cell.get("panels", []):
            panel["image"] = NAME
            panel["file"] = f"panels/{NAME}.png"
        if cell["status"] != "ok":
            cell["error"] = f"RuntimeError: {NAME}\nsecond {NAME}"
        for ev in cell["engines"].values():
            if ev.get("error"):
                ev["error"] = f"ValueError: {NAME}"
    raw["verdict"]["policy_name"] = NAME
    for outcome in raw["verdict"]["outcomes"]:
        outcome["rule"] = f"rule {NAME}"
        if outcome.get("reason"):
            outcome["reason"] = f"reason {NAME}"
    next(c for c in raw["cells"] if c["status"] != "ok")["error"] = FORMULA
    return AuditReport.from_dict(raw)


@pytest.fixture(scope="module")
def hostile() -> AuditReport:
    return _hostile()


def test_the_fixture_puts_the_name_everywhere(hostile: AuditReport) -> None:
    assert any(p.image == NAME for c in hostile.cells for p in c.panels)
    assert any(c.status != "ok" for c in hostile.cells)
    assert any(e.status != "ok" for e in hostile.engines)


def test_escape_markdown() -> None:
    assert escape_markdown(NAME) == "&lt;img src=x onerror=alert(1)&gt;\\|\\*a\\*"
    assert escape_markdown("[x](javascript:alert(1)) _u_ `c` ~~s~~ a\\b") == (
        "[x\\](javascript:alert(1)) \\_u\\_ \\`c\\` \\~\\~s\\~\\~ a\\\\b"
    )
    assert escape_markdown("a\n\tb") == "a b"


def _no_raw_markup(text: str) -> None:
    # a code span is literal (no HTML, no emphasis); only backticks could end it early
    text = re.sub(r"`[^`\n]*`", "", text)
    assert "<img src=x" not in text
    assert "onerror=alert(1)>" not in text
    # every *a* of the name is escaped: no emphasis, no stray table column
    assert re.search(r"(?<!\\)\*a(?<!\\)\*", text) is None, "unescaped emphasis"
    assert re.search(r"(?<!\\)\|\*", text) is None, "unescaped pipe from the name"


def _tables_keep_their_columns(md: str) -> None:
    """Every table row has as many unescaped pipes as its header row."""
    expected = None
    for line in md.splitlines():
        if not line.startswith("|"):
            expected = None
            continue
        pipes = len(re.findall(r"(?<!\\)\|", line))
        if expected is None:
            expected = pipes
        assert pipes == expected, line


def test_markdown_escapes_every_name(hostile: AuditReport) -> None:
    md = render_markdown(hostile)
    _no_raw_markup(md)
    _tables_keep_their_columns(md)
    assert "&lt;img src=x onerror=alert(1)&gt;\\|\\*a\\*" in md  # shown, literally


def test_markdown_panel_links_are_percent_encoded(hostile: AuditReport) -> None:
    md = render_markdown(hostile)
    images = re.findall(r"!\[[^\n]*?\]\(<([^>\n]*)>\)", md)
    assert images, "no panel image in the Markdown"
    for target in images:
        assert target.startswith("panels/%3Cimg%20src%3Dx") and target.endswith(".png")


def test_pr_summary_escapes_every_name(hostile: AuditReport) -> None:
    md = render_pr_summary(hostile)
    _no_raw_markup(md)
    _tables_keep_their_columns(md)
    assert "rule &lt;img src=x onerror=alert(1)&gt;\\|\\*a\\*" in md


def test_html_escapes_every_name(hostile: AuditReport) -> None:
    html = render_html(hostile)
    assert "<img src=x" not in html and "onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;|*a*" in html
    # the only <img> elements are the inlined panel PNGs
    assert all(
        tag.startswith('<img src="data:image/png;base64,')
        for tag in re.findall(r"<img[^>]*>", html)
    )


def test_junit_is_well_formed_and_holds_the_text(hostile: AuditReport) -> None:
    xml = render_junit(hostile)
    assert "<img src=x" not in xml
    root = ET.fromstring(xml)
    texts = " ".join(
        [*(e.text or "" for e in root.iter()), *(v for e in root.iter() for v in e.attrib.values())]
    )
    assert NAME in texts  # escaped in the XML, the same string once parsed


def test_csv_keeps_its_columns_and_defuses_formulas(hostile: AuditReport) -> None:
    text = render_csv(hostile)
    rows = list(csv.reader(io.StringIO(text)))
    assert len({len(r) for r in rows}) == 1
    at = rows[0].index("error")
    errors = [r[at] for r in rows[1:]]
    assert f"'{FORMULA}" in errors and FORMULA not in errors
    assert any(NAME in e for e in errors)
    # numbers are never prefixed: a negative value stays a number
    assert all(not v.startswith("'-") for r in rows[1:] for v in r[at + 1 :])
