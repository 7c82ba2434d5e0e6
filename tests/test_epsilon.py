"""segshield.epsilon: the one parser and formatter of perturbation budgets (golden cases)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from segshield.epsilon import (
    ADVUNET_EPSILONS,
    DEFAULT_EPSILONS,
    MISSING,
    format_epsilon,
    parse_epsilon,
    parse_epsilons,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4/255", 4 / 255),
        (" 8 / 255 ", 8 / 255),
        ("0.5/255", 0.5 / 255),
        ("1/10", 0.1),
        ("0.3", 0.3),
        (" 0 ", 0.0),
        (0.03, 0.03),
        (0, 0.0),
        (1, 1.0),
    ],
)
def test_parse_epsilon_golden(value: object, expected: float) -> None:
    assert parse_epsilon(value) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "not a number"),
        ([1], "not a number"),
        ("", "not a number"),
        ("four/255", "not a number"),
        ("-1/255", "non-negative"),
        (-0.1, "non-negative"),
        ("nan", "finite"),
        (math.inf, "finite"),
        ("2/0", "divides by zero"),
        ("4/256", "did you mean '4/255'"),
        (8, "did you mean '8/255'"),
        ("300/255", "> 1"),
    ],
)
def test_parse_epsilon_rejects_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_epsilon(value)


def test_parse_epsilons_lists_and_presets() -> None:
    assert parse_epsilons("default") == DEFAULT_EPSILONS == (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    assert parse_epsilons(" advunet ") == ADVUNET_EPSILONS
    assert ADVUNET_EPSILONS[0] == 0.1 and ADVUNET_EPSILONS[-1] == 0.9 and len(ADVUNET_EPSILONS) == 9
    assert parse_epsilons("2/255, 0.5,") == (2 / 255, 0.5)
    assert parse_epsilons(["1/255", 0.5]) == (1 / 255, 0.5)
    assert parse_epsilons(0.25) == (0.25,)
    # seed mammography's classifier sweep, usable in settings files too
    seed = parse_epsilons("seed")
    assert seed[0] == 0.0 and seed[-1] == 0.3 and 8 / 255 in seed and len(seed) == 9


def test_parse_epsilons_lists_every_bad_item() -> None:
    with pytest.raises(ValueError) as info:
        parse_epsilons("x,2/0,0.1,9")
    msg = str(info.value)
    assert "'x'" in msg and "'2/0'" in msg and "'9'" in msg and "0.1" not in msg
    for bad in ("", " , ", [], {"a": 1}):
        with pytest.raises(ValueError):
            parse_epsilons(bad)


@pytest.mark.parametrize(
    ("eps", "text"),
    [
        (4 / 255, "4/255"),
        (8 / 255 + 1e-9, "8/255"),
        (1.0, "1"),  # ASMA's uncapped budget
        (51 / 255, "0.2"),  # a short decimal: advunet's sweep reads 0.1, 0.2, ... 0.9
        (0, "0"),
        (0.0, "0"),
        (0.01, "0.01"),
        (0.1, "0.1"),
        (0.3, "0.3"),
        (1 / 7, "0.142857"),
        (None, MISSING),
        (math.nan, MISSING),
        ("4/255", MISSING),
        (math.inf, "inf"),
    ],
)
def test_format_epsilon_golden(eps: object, text: str) -> None:
    assert format_epsilon(eps) == text


def test_format_round_trips_through_parse() -> None:
    for eps in (*DEFAULT_EPSILONS, *ADVUNET_EPSILONS, 0.0, 0.0123):
        assert parse_epsilon(format_epsilon(eps)) == pytest.approx(eps, rel=1e-5)


def test_old_homes_share_the_one_implementation() -> None:
    from segshield.gate import parse_epsilon as gate_parse
    from segshield.reports import MISSING as REPORTS_MISSING
    from segshield.reports import format_epsilon as reports_format

    assert gate_parse is parse_epsilon and reports_format is format_epsilon
    assert REPORTS_MISSING == MISSING


def test_epsilon_module_is_stdlib_only() -> None:
    code = (
        "import sys, segshield.epsilon; "
        "assert not {'torch', 'numpy'} & set(sys.modules), sorted({'torch', 'numpy'} & "
        "set(sys.modules))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
