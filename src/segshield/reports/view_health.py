"""The engine health section of the report view: each engine's clean masks against the
source's on every audited image (stored by the audit; formatted here, never computed)."""

from __future__ import annotations

from typing import Any

from segshield.reports.format import format_percent
from segshield.reports.view import Cell, Para, Section, Table, cell, code
from segshield.reports.view_common import plain
from segshield.results import SOURCE_ENGINE, AuditReport

__all__ = ["HEALTH_BADGE", "health_of", "health_section"]

HEALTH_BADGE = {"ok": "ok", "degraded": "warn", "failed": "bad"}


def health_of(e: Any) -> dict:
    return e.health if isinstance(e.health, dict) else {}


def health_section(report: AuditReport) -> Section | None:
    """The engine health line and table (first screen): each engine's clean masks against
    the source's on every audited image; None for reports that did not measure it."""
    measured = [e for e in report.engines if health_of(e)]
    if not measured:
        return None
    parts: list[Cell] = [cell("Engine health: ")]
    for i, e in enumerate(measured):
        status = str(health_of(e).get("status"))
        parts += [cell(", " if i else ""), code(e.name), cell(" "),
                  Cell(status, strong=status != "ok", badge=HEALTH_BADGE.get(status))]  # fmt: skip
    unhealthy = [e for e in measured if health_of(e).get("status") != "ok"]
    parts.append(cell(f" ({len(unhealthy)} not ok)." if unhealthy else " (all ok)."))
    first = health_of(measured[0])
    what = "predicted classes" if report.task == "classification" else "masks"
    note = (
        f"Clean {what} of each engine against {SOURCE_ENGINE}'s on every audited image. "
        "Agreement: Dice of the engine's masks against the source's (mean over foreground "
        "classes; for a classifier the share of images with the same class); ok >= "
        f"{plain(first.get('ok_min'))}, failed < {plain(first.get('failed_below'))}."
    )
    header = ["Engine", "Health", "Agreement", "Changed vs source", "Images", "Reason"]
    rows = [
        [
            code(e.name),
            Cell(str(h.get("status")), badge=HEALTH_BADGE.get(str(h.get("status")))),
            Cell(plain(h.get("mask_dice")), num=True),
            Cell(format_percent(h.get("flip_share")), num=True),
            Cell(plain(h.get("n_images")), num=True),
            cell(h.get("reason")),
        ]
        for e in measured
        if (h := health_of(e))
    ]
    blocks: list[Any] = [Para(parts), Para([cell(note)], note=True)]
    # the line above is the first screen; the table is one click away (and in Markdown)
    blocks.append(Table(header, rows, title=[cell("Per engine")], cls="health", folded=True))
    return Section("health", "Engine health", blocks)
