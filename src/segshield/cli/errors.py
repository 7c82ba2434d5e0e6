"""The one error boundary of the CLI, and its exit codes.

    0  the command did what it was asked (and a gate, if any, passed)
    1  a gate rule was crossed, or `--strict` found failed cells or engines
    2  no verdict: bad input or settings, an environment problem (disk full, permission,
       missing file), or an internal error

A crash is never exit 1, which CI reads as "the gate failed". Every error is printed as one
message without a traceback; `segshield --debug ...` (or SEGSHIELD_DEBUG=1) adds it.
`GuardedGroup` puts the boundary around every command, so nothing a command does after its own
`with error_boundary()` (rendering, writing a file) can escape it either.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from segshield.cli.help_format import HelpGroup
from segshield.errors import SegShieldError

T = TypeVar("T")
EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2

err_console = Console(stderr=True)

# Set by the root callback (`segshield --debug ...`) before any command runs.
_debug = False
# typer's own exits and click's usage errors (exit 2 with the usage line) pass through.
_PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException)


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def _first_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def describe_os_error(exc: OSError) -> str:
    """`cannot use /x/y: No space left on device` from an OSError (whatever its subclass)."""
    reason = exc.strerror or _first_line(str(exc)) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{reason}: {' -> '.join(names)}" if names else reason


def _fail(message: str, exc: BaseException) -> typer.Exit:
    """Print `message` (literally: brackets are not rich markup) and, with --debug, the
    traceback; the typer.Exit(2) to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if _debug:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        err_console.print(text, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def error_boundary() -> Iterator[None]:
    """Every error a command can meet becomes one message and exit code 2 (see the module)."""
    try:
        yield
    except _PASS_THROUGH:
        raise
    except SegShieldError as exc:
        raise _fail(str(exc), exc) from exc
    except OSError as exc:
        raise _fail(describe_os_error(exc), exc) from exc
    except KeyboardInterrupt as exc:  # click would say "Aborted!" and exit 1 (= gate failed)
        raise _fail(
            "interrupted; an audit's finished cells are kept in its --out (cells/): the same "
            "command resumes them",
            exc,
        ) from exc
    except MemoryError as exc:
        raise _fail("out of memory (try a smaller --batch-size or --limit)", exc) from exc
    except Exception as exc:
        hint = (
            "" if _debug else " (run with --debug for the traceback: segshield --debug COMMAND ...)"
        )
        detail = _first_line(str(exc))
        name = type(exc).__name__
        raise _fail(f"internal error: {name}{': ' + detail if detail else ''}{hint}", exc) from exc


class GuardedGroup(HelpGroup):
    """The app's group: every command runs inside `error_boundary`; `HelpGroup`'s help."""

    def invoke(self, ctx: Any) -> Any:
        with error_boundary():
            return super().invoke(ctx)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def run_guarded(fn: Callable[[], T]) -> T:
    with error_boundary():
        return fn()
