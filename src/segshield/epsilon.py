"""Perturbation budgets (epsilons): parsing and display, shared by the settings file, the CLI,
the gate policy and the reports.

Epsilons are L-infinity budgets in pixel units of [0, 1] images. Users write them as numbers
(``0.03``), as 8-bit pixel steps (``"4/255"``), as fractions (``"1/10"``) or, for a list, as a
named preset (``"default"``, ``"advunet"``). Standard library only: the gate and the report
renderers use this without loading torch or numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Shown for a missing epsilon; the same "—" as segshield.reports.format.MISSING.
MISSING = "—"

DEFAULT_EPSILONS: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
# Seed advunet sweeps FGSM over 0.1 .. 0.9; offered with --epsilons advunet.
ADVUNET_EPSILONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Seed mammography (classifier): small budgets (imperceptible) and large ones, with 0 = clean.
SEED_CLASSIFIER_EPSILONS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 0.05, 0.1, 0.15, 0.3)

EPSILON_PRESETS: dict[str, tuple[float, ...]] = {
    "default": DEFAULT_EPSILONS,
    "advunet": ADVUNET_EPSILONS,
    "seed": SEED_CLASSIFIER_EPSILONS,
}

# An epsilon is shown as k/255 when eps * 255 is this close to an integer.
_EPS_INT_TOL = 1e-6
_NOT_AN_EPSILON = "is not a number or a 'k/255' string"


def _fraction(text: str, value: Any) -> float:
    """``"a/b"`` -> a / b; ValueError for anything else."""
    num, _, den = text.partition("/")
    try:
        a, b = float(num), float(den)
    except ValueError:
        raise ValueError(f"{value!r} {_NOT_AN_EPSILON}") from None
    if b == 256:
        # 8-bit images have 255 steps between 0 and 1; "/256" is the classic off-by-one.
        raise ValueError(f"{value!r}: pixel steps are k/255, did you mean '{num.strip()}/255'?")
    if b == 0:
        raise ValueError(f"{value!r} divides by zero")
    return a / b


def parse_epsilon(value: Any) -> float:
    """A number in [0, 1], or a ``"k/255"``, ``"a/b"`` or numeric string -> float.

    Raises ValueError saying what is wrong (bools, negative, non-finite and > 1 are refused).
    """
    if isinstance(value, str):
        text = value.strip()
        if "/" in text:
            eps = _fraction(text, value)
        else:
            try:  # a plain number typed on the command line, e.g. "0.3"
                eps = float(text)
            except ValueError:
                raise ValueError(f"{value!r} {_NOT_AN_EPSILON}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        eps = float(value)
    else:
        raise ValueError(f"{value!r} {_NOT_AN_EPSILON}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{value!r} is not a non-negative finite epsilon")
    if eps > 1:
        if isinstance(value, str) and "/" in value:
            raise ValueError(f"{value!r} is > 1 (epsilons are in [0, 1])")
        # Epsilon is in pixel units of [0, 1] images; 8 almost surely meant 8/255.
        raise ValueError(f"{value!r} is > 1 (epsilons are in [0, 1]; did you mean '{value}/255'?)")
    return eps


def parse_epsilons(value: Any) -> tuple[float, ...]:
    """A comma string (``"1/255,0.03"``), a preset name, a number or a list -> epsilons.

    Raises one ValueError listing every bad item.
    """
    if isinstance(value, str):
        if value.strip().lower() in EPSILON_PRESETS:
            return EPSILON_PRESETS[value.strip().lower()]
        items: Sequence[Any] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError(
            f"{value!r}: expected a comma list, a list of epsilons or a preset "
            f"({', '.join(EPSILON_PRESETS)})"
        )
    if not items:
        raise ValueError("expected at least one epsilon")
    out: list[float] = []
    problems: list[str] = []
    for item in items:
        try:
            out.append(parse_epsilon(item))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(out)


def format_epsilon(eps: float | None) -> str:
    """One way to write an ε everywhere: a short decimal when it has at most two decimal
    places (``0.1``, ``0.25``, ``1``: a sweep such as advunet's 0.1 … 0.9 is never written
    ``51/255`` next to ``0.1``), else ``4/255`` when ``eps * 255`` is within 1e-6 of an
    integer, ``0`` for zero, else the float (``0.0123``); ``—`` when missing (None, NaN, not
    a number)."""
    if eps is None or isinstance(eps, bool) or not isinstance(eps, (int, float)):
        return MISSING
    value = float(eps)
    if math.isnan(value):
        return MISSING
    if math.isfinite(value) and abs(value * 100 - round(value * 100)) <= _EPS_INT_TOL:
        return f"{round(value, 2):g}"
    steps = value * 255.0
    if math.isfinite(steps) and abs(steps - round(steps)) <= _EPS_INT_TOL:
        k = round(steps)
        return "0" if k == 0 else f"{k}/255"
    return f"{value:.6g}"


__all__ = [
    "ADVUNET_EPSILONS",
    "DEFAULT_EPSILONS",
    "EPSILON_PRESETS",
    "MISSING",
    "SEED_CLASSIFIER_EPSILONS",
    "format_epsilon",
    "parse_epsilon",
    "parse_epsilons",
]
