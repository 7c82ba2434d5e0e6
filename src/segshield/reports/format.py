"""Value formatting shared by the renderers and the gate's messages.

Convention: fractions in [0, 1] (Dice, IoU, accuracy, attack success, disagreement, SSIM) are
shown as percent with two decimals ("84.65%"; a non-zero value under 0.005% as "<0.01%");
differences of fractions (Dice gap) as signed percentage points ("-0.12 pp"); unbounded values
(loss, pixel error) as plain floats with four significant digits; epsilon by
:func:`segshield.epsilon.format_epsilon` everywhere (k/255 when exact, else a decimal), and a
measured L∞ in 1/255 steps when every epsilon of the report is a whole number of steps, else
as a decimal. Missing values (None, NaN) are shown as "—".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

# One epsilon display rule for reports, the gate and the CLI: it lives with the parser.
from segshield.epsilon import format_epsilon as format_epsilon

_STEP_TOL = 1e-6  # as segshield.epsilon: within this of a whole number of 1/255 steps

MISSING = "—"


def _number(value: object) -> float | None:
    """`value` as a finite-or-infinite float, or None when missing, NaN or not a number."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def format_percent(value: float | None) -> str:
    """A fraction as percent with two decimals: ``0.8465 -> "84.65%"``."""
    number = _number(value)
    if number is None:
        return MISSING
    if 0 < abs(number) < 0.00005:
        # A few differing pixels must not read as exactly zero.
        return f"{'-' if number < 0 else ''}<0.01%"
    return f"{number * 100:.2f}%"


def format_points(value: float | None) -> str:
    """A difference of fractions as signed percentage points: ``-0.0012 -> "-0.12 pp"``."""
    number = _number(value)
    if number is None:
        return MISSING
    if 0 < abs(number) < 0.00005:
        return f"{'-' if number < 0 else '+'}<0.01 pp"
    return f"{number * 100:+.2f} pp"


def format_float(value: float | None) -> str:
    """A plain value with four significant digits."""
    number = _number(value)
    return MISSING if number is None else f"{number:.4g}"


def format_steps(value: float | None) -> str:
    """A pixel-unit magnitude in 1/255 steps with two decimals: ``0.0157 -> "4.00/255"``."""
    number = _number(value)
    return MISSING if number is None else f"{number * 255:.2f}/255"


def in_steps(epsilons: Iterable[float | None]) -> bool:
    """True when every (non-missing) epsilon is a whole number of 1/255 steps."""
    values = [float(e) for e in epsilons if _number(e) is not None]
    return all(abs(e * 255 - round(e * 255)) <= _STEP_TOL for e in values)


def magnitude_formatter(steps: bool) -> Callable[[float | None], str]:
    """A measured L∞ size in the report's ε style: 1/255 steps with two decimals, or a
    decimal with four significant digits."""
    return format_steps if steps else format_float
