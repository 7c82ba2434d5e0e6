"""Markdown rendering of an audit report: the lay-out of :func:`build_view`, for every task.

Every value is formatted by the view (fractions as percent with two decimals, the Dice gap in
signed percentage points, ε and L∞ in 1/255 steps, "—" for a missing value); this module only
writes headings, tables, paragraphs and lists, escaping report text for Markdown. Charts are
the HTML report's; their numbers are in the tables here.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from segshield.reports.format import MISSING
from segshield.reports.view import (
    Block,
    Bullets,
    Cell,
    Chart,
    PanelGroup,
    Para,
    Section,
    Table,
    build_view,
)
from segshield.results import AuditReport

# Characters that start or end inline Markdown markup (emphasis, code, links, images,
# strikethrough, table cells) or escape one: backslash-escaped wherever report text goes.
# An underscore between two letters or digits cannot open or close emphasis (CommonMark's
# flanking rules), so "dice_focal" stays as it is.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*~|]|\](?=[(\[:])|(?<![^\W_])_|_(?![^\W_]))")
# Line-start markup (heading, quote, list, setext underline, thematic break, ordered list).
_LINE_START = re.compile(r"^(\s*)([#>+=\[-]|\d+(?=[.)](?:\s|$)))")


def escape_markdown(text: str) -> str:
    """Report text (image names, model and engine names, reasons, error messages, paths) as
    literal Markdown text on one line: whitespace runs become one space; inline markup
    characters (``\\ ` * ~ |``, ``_`` except inside a word, and ``]`` before ``(``, ``[``
    or ``:``, which would close a link) are backslash-escaped; ``& < >`` become HTML
    entities. So neither Markdown nor raw HTML in a name reaches a viewer. Edge spaces are
    kept (inline parts are joined)."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", str(text)))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _line(text: str) -> str:
    """A rendered line that must not start block markup (a paragraph's first part)."""
    match = _LINE_START.match(text)
    if not match:
        return text
    lead, mark = match.groups()
    if mark[0].isdigit():  # "1." or "1)": escape the delimiter
        end = match.end()
        return f"{text[:end]}\\{text[end:]}"
    return f"{lead}\\{text[len(lead) :]}"


_escape = escape_markdown


def _text(value: object) -> str:
    """Table-safe text; None or empty as the missing mark."""
    text = "" if value is None else str(value).strip()
    return _escape(text) if text else MISSING


def _inline(c: Cell) -> str:
    if c.code:
        # A code span is literal: only backticks and pipes need care.
        text = "`" + " ".join(c.text.split()).replace("`", "'").replace("|", "\\|") + "`"
    else:
        text = _escape(c.text)
    if c.strong and text:
        text = f"**{text}**"
    text = f"{text} {c.ci}" if c.ci else text
    return f"{text} ({_escape(c.sub)})" if c.sub else text


def _parts(parts: list[Cell]) -> str:
    return "".join(_inline(c) for c in parts)


def _table(table: Table) -> list[str]:
    lines = [f"### {_parts(table.title)}", ""] if table.title else []
    if not table.rows:
        return [*lines, "Not recorded.", ""]
    header = [_text(h) if h else " " for h in table.header]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_inline(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def _block(block: Block) -> list[str]:
    if isinstance(block, Table):
        return _table(block) if block.markdown else []
    if isinstance(block, Para):
        return [_line(_parts(block.parts)), ""] if block.markdown else []
    if isinstance(block, Bullets):
        if not block.markdown:
            return []
        head = [f"{_line(_escape(block.summary))}:", ""] if block.summary else []
        return [*head, *(f"- {_parts(item)}" for item in block.items), ""]
    if isinstance(block, PanelGroup):
        lines = [f"### {_parts(block.title)}", ""]
        for p in block.panels:
            # brackets would end the alt text early: shown as parentheses
            caption = "".join(c.text for c in p.caption).replace("[", "(").replace("]", ")")
            alt = _escape(caption)
            target = quote(p.file or "", safe="/")  # a path, percent-encoded: never markup
            lines += [f"![{alt}](<{target}>)" if p.file else f"{alt} (no image file)", ""]
        return lines
    assert isinstance(block, Chart)  # drawn in HTML only; its values are in a table
    return []


def _section(section: Section) -> list[str]:
    if not section.markdown:
        return []
    title = section.title
    if section.banner is not None:
        title = f"{title}: {section.banner.word}"
    lines = [f"## {_text(title)}", ""]
    if section.banner is not None:
        lines += [_parts(section.banner.parts), ""]
    for block in section.blocks:
        lines += _block(block)
    return lines


def render_markdown(report: AuditReport) -> str:
    """The report as Markdown: the sections of the view (verdict, the task's tables, engines,
    transfer, failed cells, provenance). Formats nothing itself and computes nothing."""
    view = build_view(report)
    lines = [f"# {_text(view.title)}", "", _text(view.units), ""]
    for section in view.sections:
        lines += _section(section)
    return "\n".join(lines).rstrip() + "\n"
