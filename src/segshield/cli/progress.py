"""Progress as the console can show it: a rich bar on a terminal; elsewhere (CI logs, pipes,
CliRunner) one plain line per finished step with the count, what finished, the elapsed time
and an ETA, e.g. ``[3/12] pgd/bce/8/255 done · 42 s elapsed · ETA 1 min 50 s``.

The library reports ``progress(cell_id, done, total)`` (and train ``on_epoch(epoch, loss)``)
without times; the times are the CLI's. A cell id keeps its ε to 6 digits (``pgd/bce/
0.0313725``, the key in report.json); the terminal shows it as `format_epsilon` writes every ε
(`readable_epsilons`: ``pgd/bce/8/255``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

from segshield.epsilon import format_epsilon

CellProgress = Callable[[str, int, int], None]


# A cell id, attack/loss/ε with ε written "%.6g" (segshield.results.AuditCell.make_id), not
# inside a longer path; a custom loss named by a path (with "/") cannot name a cell.
_CELL_ID = re.compile(
    r"(?<![\w./-])([A-Za-z][\w.-]*/[^\s/]+/)(\d+(?:\.\d+)?(?:e-\d+)?)(?![\w/]|\.\d)"
)


def _epsilon_text(token: str) -> str:
    value = float(token)
    k = round(value * 255)
    if f"{k / 255:.6g}" == token:  # "0.0313725" is 8/255 written to 6 digits
        value = k / 255
    return format_epsilon(value)


def readable_epsilons(text: str) -> str:
    """`text` with the ε of every cell id in it as `format_epsilon` writes it:
    ``"cell pgd/bce/0.0313725 failed"`` -> ``"cell pgd/bce/8/255 failed"``."""
    return _CELL_ID.sub(lambda m: m.group(1) + _epsilon_text(m.group(2)), text)


def format_duration(seconds: float) -> str:
    """``42 s``, ``1 min 50 s``, ``3 min``, ``2 h 5 min`` (whole seconds, never negative)."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class StepClock:
    """Elapsed time since construction and the ETA of the remaining steps.

    The ETA uses the pace since the first finished step (the first step also carries the
    preparation before it: data, model, engine builds); until a second step finishes it uses
    the pace of the whole run so far.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._first: tuple[int, float] | None = None

    def line(self, done: int, total: int, label: str) -> str:
        """The plain progress line after step ``done`` of ``total`` (``label`` finished)."""
        now = self._clock()
        elapsed = now - self._start
        if self._first is None:
            self._first = (done, now)
        first_done, first_at = self._first
        if done > first_done:
            per_step = (now - first_at) / (done - first_done)
        else:
            per_step = elapsed / max(done, 1)
        eta = per_step * max(total - done, 0)
        return (
            f"[{done}/{total}] {label} done · {format_duration(elapsed)} elapsed · "
            f"ETA {format_duration(eta)}"
        )


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def cell_progress(console: Console, preparing: str) -> Iterator[CellProgress]:
    """A ``progress(cell_id, done, total)`` callback for an audit: the rich bar (its first
    description ``preparing``) on a terminal, one line per finished cell elsewhere."""
    if not console.is_terminal:
        clock = StepClock()
        yield lambda cell, done, total: _say(
            console, clock.line(done, total, readable_epsilons(cell))
        )
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(preparing, total=None)

        def on_cell(cell: str, done: int, total: int) -> None:
            label = readable_epsilons(cell)
            progress.update(task, description=f"attacking: {label}", completed=done, total=total)

        yield on_cell


__all__ = ["StepClock", "cell_progress", "format_duration", "readable_epsilons"]
