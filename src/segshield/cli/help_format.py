"""``--help`` as segshield shows it: options grouped in panels, every option name whole at any
usual terminal width (80 columns included), help texts shown exactly as written.

typer's own rich help lays options out in five columns (option, short, ``--no-option``,
short, type) that rich shrinks evenly on a narrow terminal, cutting names at 80 columns
(``--calibration-m…``), and it reads help texts as rich markup, where ``segshield[mlflow]``
loses ``[mlflow]`` (a style tag). Here an option's names and type are one column that never
wraps (``--no-x`` on a second line), the help text wraps in what is left, and every text is
plain: click's own help record (help, default, range), never parsed as markup, so no help
text needs escaping. Without rich help (``TYPER_USE_RICH=0``) click's plain help is used.

Panels: ``typer.Option(..., rich_help_panel=ENGINES)``; panels show in `PANELS` order.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import click
import typer.core
from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

# Help panels, in the order `--help` shows them (an unknown panel name comes after these).
ARGUMENTS = "Arguments"
MODEL = "Model"
DATA = "Data"
ATTACKS = "Attacks"
ENGINES = "Engines"
EVALUATION = "Evaluation"
MEASUREMENT = "Measurement"
OUTPUT = "Output & tracking"
GATE = "Gate"
TRAINING = "Training"
RUN = "Run control"
OPTIONS = "Options"  # options without a panel
COMMANDS = "Commands"
PANELS = (
    ARGUMENTS, MODEL, DATA, ATTACKS, ENGINES, EVALUATION, MEASUREMENT, TRAINING, OUTPUT, GATE, RUN
)  # fmt: skip

# typer's own width override of help output (rich reads COLUMNS itself).
_WIDTH_ENV = "TERMINAL_WIDTH"


def _console() -> Console:
    """Made per help call: rich reads COLUMNS when a console is made (CliRunner sets it)."""
    width = os.environ.get(_WIDTH_ENV, "")
    return Console(width=int(width) if width.isdigit() else None, highlight=False)


def paragraphs(text: str | None) -> list[str]:
    """A docstring's paragraphs, each on one line (click's ``\\f`` ends the help)."""
    cleaned = inspect.cleandoc(text or "").partition("\f")[0]
    return [" ".join(p.split()) for p in cleaned.split("\n\n") if p.strip()]


def _names(record: str) -> Text:
    """``--bench / --no-bench`` -> two lines; names bold cyan, the type (``<int>``) yellow."""
    text = Text("\n".join(record.split(" / ")))
    text.highlight_regex(r"(?<![\w-])--?[\w-]+", "bold cyan")
    text.highlight_regex(r"<[^>]+>", "yellow")
    return text


def _help(record: str) -> Text:
    """The help text, its trailing ``[default: ...; x>=1]`` dim (plain text: no markup)."""
    text = Text(record, overflow="fold")  # a long default (no spaces) folds, never cut
    head, sep, _ = record.rpartition("  [")
    if record.startswith("[") and record.endswith("]") and not sep:
        text.stylize("dim")
    elif sep and record.endswith("]"):
        text.stylize("dim", len(head) + 2)
    return text


def _panel_of(param: click.Parameter) -> str:
    if getattr(param, "param_type_name", "") == "argument":  # typer's is no click.Argument
        return ARGUMENTS
    return getattr(param, "rich_help_panel", None) or OPTIONS


def _ordered(groups: dict[str, list[Any]]) -> list[tuple[str, list[Any]]]:
    """Known panels in `PANELS` order, then others as they came, then "Options" (where a lone
    ``--help`` joins the last panel instead of making one of its own)."""
    names = [p for p in PANELS if p in groups] + [
        p for p in groups if p not in PANELS and p != OPTIONS
    ]
    rest = groups.get(OPTIONS, [])
    if names and len(rest) == 1 and rest[0][0] == "--help":
        groups[names[-1]] = [*groups[names[-1]], *rest]
    elif rest:
        names.append(OPTIONS)
    return [(name, groups[name]) for name in names]


def _table(rows: Sequence[tuple[str, str]], name_width: int) -> Table:
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(no_wrap=True, min_width=name_width)  # never shrunk: names stay whole
    table.add_column(ratio=1)
    for names, help_text in rows:
        table.add_row(_names(names), _help(help_text))
    return table


def _panel(title: str, body: Table) -> Panel:
    return Panel(body, title=title, title_align="left", border_style="dim")


def render_help(command: click.Command, ctx: click.Context) -> None:
    """Print the help of `command` (a group lists its commands too) to stdout."""
    console = _console()
    console.print(Padding(Text(command.get_usage(ctx), style="bold"), 1))
    texts = paragraphs(command.help)
    if texts:
        console.print(Padding(Text(texts[0]), (0, 1, 0, 1)))
        for more in texts[1:]:
            console.print(Padding(Text(more, style="dim"), (1, 1, 0, 1)))
        console.print()
    groups: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            groups.setdefault(_panel_of(param), []).append(record)
    panels = _ordered(groups)
    lines = [line for _, rows in panels for names, _ in rows for line in names.split(" / ")]
    width = max(map(len, lines), default=0)
    for title, rows in panels:
        console.print(_panel(title, _table(rows, width)))
    if callable(getattr(command, "list_commands", None)):  # typer's group is no click.Group
        _print_commands(console, command, ctx)


def _print_commands(console: Console, group: Any, ctx: click.Context) -> None:
    """The group's commands, one line each, in panels by their ``rich_help_panel``."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        first = paragraphs(cmd.short_help or cmd.help)
        panel = getattr(cmd, "rich_help_panel", None) or COMMANDS
        groups.setdefault(panel, []).append((name, first[0] if first else ""))
    width = max((len(n) for rows in groups.values() for n, _ in rows), default=0)
    for title, rows in groups.items():
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(no_wrap=True, min_width=width, style="bold cyan")
        table.add_column(ratio=1)
        for name, text in rows:
            table.add_row(name, Text(text, overflow="fold"))
        console.print(_panel(title, table))


def _rich_help(command: Any) -> bool:
    return bool(typer.core.HAS_RICH) and command.rich_markup_mode is not None


class HelpCommand(TyperCommand):
    """A typer command whose ``--help`` is `render_help`'s."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not _rich_help(self):
            return super().format_help(ctx, formatter)
        render_help(self, ctx)
        return None


class HelpGroup(TyperGroup):
    """A typer group whose ``--help`` is `render_help`'s."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not _rich_help(self):
            return super().format_help(ctx, formatter)
        render_help(self, ctx)
        return None


__all__ = [
    "ARGUMENTS",
    "ATTACKS",
    "DATA",
    "ENGINES",
    "EVALUATION",
    "GATE",
    "MEASUREMENT",
    "MODEL",
    "OPTIONS",
    "OUTPUT",
    "PANELS",
    "RUN",
    "HelpCommand",
    "HelpGroup",
    "paragraphs",
    "render_help",
]
