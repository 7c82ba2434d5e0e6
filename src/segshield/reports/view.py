"""The format-neutral view of an audit report, built ONCE for every renderer.

:func:`build_view` turns an :class:`AuditReport` into sections of plain blocks: tables (a
header and rows of already-formatted strings), paragraphs, bullet lists, chart series and
panel descriptors. ``markdown.py`` and ``html.py`` only lay these out (and escape them); no
renderer reads the report or formats a number itself. The first screen is the verdict, the
engine health line and the engine x attack x ε matrix (engines that agree on one row). Other
sections depend on the task: a classifier shows accuracy and SSIM against ε, a segmentation
model Table I (with HD95 / ASD when measured), ε curves, a per-image table, a per-volume
table (slices of volumes), per-class scores, panels and engine transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from segshield.enums import TaskKind
from segshield.reports.format import MISSING

if TYPE_CHECKING:
    from segshield.reports.svg import Series
    from segshield.results import AuditReport

# Every section id a report can have, in page order (stable ids for tests and links).
SECTION_IDS: tuple[str, ...] = (
    "verdict",
    "health",
    "matrix",
    "evaluation-warnings",
    "summary",
    "worst-case",
    "certified",
    "accuracy",
    "curves",
    "ssim",
    "per-image",
    "per-volume",
    "per-class",
    "losses",
    "targeted",
    "panels",
    "engines",
    "transfer",
    "skipped",
    "failed-cells",
    "provenance",
)
# The sections every segmentation report has (the others appear when there is data).
CORE_SECTION_IDS: tuple[str, ...] = (
    "verdict",
    "summary",
    "curves",
    "panels",
    "engines",
    "transfer",
    "failed-cells",
    "provenance",
)
CLASSIFIER_SECTION_IDS: tuple[str, ...] = (
    "verdict",
    "summary",
    "accuracy",
    "ssim",
    "engines",
    "transfer",
    "failed-cells",
    "provenance",
)


@dataclass(frozen=True)
class Cell:
    """One formatted value. code: shown as code; num: a right-aligned number; strong: bold;
    ci: its confidence-interval text; title: hover text (HTML); badge: "ok" | "bad" | "warn",
    shown as a status badge in HTML; sub: a second, smaller line (e.g. the change vs the
    source engine; in Markdown in parentheses); sort: the key a sortable HTML table sorts
    this column by (a number as text, "" sorts last), default the text."""

    text: str
    code: bool = False
    num: bool = False
    strong: bool = False
    ci: str | None = None
    title: str | None = None
    badge: str | None = None
    sub: str | None = None
    sort: str | None = None


def cell(value: object, **kw: object) -> Cell:
    """A Cell from any value: None as the missing mark, anything else as str()."""
    return Cell(MISSING if value is None else str(value), **kw)  # type: ignore[arg-type]


def code(value: object) -> Cell:
    return Cell(MISSING, code=False) if value is None else Cell(str(value), code=True)


@dataclass
class Table:
    """header: column titles; rows: cells. title: a sub-heading; cls: an HTML class;
    folded: HTML shows it inside a closed ``<details>``; markdown: False leaves it out of
    Markdown (detail that only the interactive page holds); sortable: clicking a header
    sorts the HTML table by that column (by each cell's ``sort`` key)."""

    header: list[str]
    rows: list[list[Cell]]
    title: list[Cell] | None = None
    cls: str = ""
    folded: bool = False
    markdown: bool = True
    sortable: bool = False


@dataclass
class Para:
    """A paragraph of inline cells; note: a smaller, muted note."""

    parts: list[Cell]
    note: bool = False
    markdown: bool = True


@dataclass
class Bullets:
    """A bullet list, each item a list of inline cells; folded with a summary line in HTML."""

    items: list[list[Cell]]
    summary: str | None = None
    markdown: bool = True


@dataclass
class Chart:
    """A line chart of stored values; y values are fractions when ``fraction``. x_name: what
    x is ("ε", shown in the report's ε style; anything else, e.g. "radius", as a plain
    number); format_x: how x values read (default by x_name); legend: the legend entries
    when they are not one per series (a colour per attack, a line style per engine group)."""

    slug: str
    title: str
    note: str
    series: list[Series]
    x_label: str
    y_label: str
    x_ticks: list[float]
    fraction: bool = True
    x_name: str = "ε"
    format_x: Callable[[float | None], str] | None = None
    legend: list[Series] | None = None


@dataclass
class PanelView:
    """One image panel: the PNG file (relative to the report folder) and its caption."""

    file: str | None
    columns: list[str]
    caption: list[Cell]


@dataclass
class PanelGroup:
    """The panels of one cell; folded: HTML shows it closed (not the attack's largest ε)."""

    title: list[Cell]
    panels: list[PanelView]
    folded: bool = False


Block = Union[Table, Para, Bullets, Chart, PanelGroup]  # noqa: UP007 (a runtime alias)


@dataclass
class Banner:
    """The verdict line: word "PASS" | "FAIL" | "NO VERDICT", kind "pass" | "fail" | "none"."""

    word: str
    kind: str
    parts: list[Cell]


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    banner: Banner | None = None
    markdown: bool = True


@dataclass
class ReportView:
    """The whole report: its title, header facts, units note and sections in page order."""

    title: str
    facts: list[str]
    units: str
    sections: list[Section]

    @property
    def section_ids(self) -> list[str]:
        return [s.id for s in self.sections]

    def section(self, sid: str) -> Section | None:
        return next((s for s in self.sections if s.id == sid), None)


def build_view(report: AuditReport) -> ReportView:
    """The view of `report` for its task (computes nothing, formats every value)."""
    from segshield.reports import view_common as common

    if report.task == TaskKind.CLASSIFICATION:
        from segshield.reports import view_classification as task_view
    else:
        from segshield.reports import view_segmentation as task_view  # type: ignore[no-redef]
    sections = [common.verdict_section(report), *task_view.sections(report)]
    from segshield.reports.view_engines import engines_section, transfer_section
    from segshield.reports.view_evaluation import evaluation_sections
    from segshield.reports.view_health import health_section
    from segshield.reports.view_overview import matrix_section

    health = health_section(report)
    sections += [health] if health is not None else []
    matrix = matrix_section(report)
    sections += [matrix] if matrix is not None else []
    sections += evaluation_sections(report)  # none for reports written before them
    sections += [
        engines_section(report),
        transfer_section(report),
        *common.skipped_sections(report),
        common.failures_section(report),
        common.provenance_section(report),
    ]
    order = {sid: i for i, sid in enumerate(SECTION_IDS)}
    sections.sort(key=lambda s: order.get(s.id, len(order)))
    return ReportView(
        title=common.title(report),
        facts=common.facts(report),
        units=common.units(report, task_view.UNITS),
        sections=sections,
    )
