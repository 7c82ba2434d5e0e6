"""One error boundary: segshield errors become a red message and exit code 2."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console

from segshield.errors import SegShieldError

T = TypeVar("T")
EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2

err_console = Console(stderr=True)


@contextmanager
def error_boundary() -> Iterator[None]:
    """Turn expected errors (bad input, unavailable engine, bad policy) into exit code 2."""
    try:
        yield
    except SegShieldError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from exc


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def run_guarded(fn: Callable[[], T]) -> T:
    with error_boundary():
        return fn()
