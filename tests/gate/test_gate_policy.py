"""Policy parsing and validation: every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from segshield.errors import PolicyError
from segshield.gate import (
    METRICS,
    Policy,
    example_policy_path,
    parse_epsilon,
    policy_from_dict,
    policy_from_toml,
)

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[policy]
name = "release"
schema_version = 1

[[rules]]
name = "pgd dice"
metric = "dice"
attack = "pgd"
engine = ["onnxruntime", "pytorch"]
epsilon_max = "4/255"
min = 0.5

[[rules]]
metric = "disagreement"
max = 0.01
"""


def _write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_policy_parses(tmp_path: Path) -> None:
    policy = policy_from_toml(_write(tmp_path, GOOD))
    assert isinstance(policy, Policy)
    assert policy.name == "release"
    first, second = policy.rules
    assert first.name == "pgd dice"
    assert first.metric == "dice"
    assert (first.bound, first.threshold) == ("min", 0.5)
    assert first.attacks == ("pgd",)
    assert first.losses is None
    assert first.engines == ("onnxruntime", "pytorch")
    assert first.epsilon_max == pytest.approx(4 / 255)
    assert second.bound == "max"
    assert second.attacks is None and second.engines is None
    # A generated name says what the rule checks.
    assert second.name == "disagreement <= 0.01"


def test_policy_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[rules]]\nmetric = "dice"\nmin = 0.1\n', name="ci-gate.toml")
    assert policy_from_toml(path).name == "ci-gate"


def test_generated_name_includes_selectors() -> None:
    policy = policy_from_dict(
        {"rules": [{"metric": "dice", "attack": "pgd", "epsilon_max": "4/255", "min": 0.5}]}
    )
    assert policy.rules[0].name == "dice >= 0.5 [attack=pgd, eps<=4/255]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4/255", 4 / 255), (" 8 / 255 ", 8 / 255), ("0.5/255", 0.5 / 255), (0.03, 0.03), (0, 0.0)],
)
def test_parse_epsilon(value: object, expected: float) -> None:
    assert parse_epsilon(value) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("value", ["4/256", "four/255", "-1/255", "", True, 8, [1], "nan"])
def test_parse_epsilon_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_epsilon(value)


def test_every_problem_reported_at_once() -> None:
    raw = {
        "polcy": {},
        "policy": {"name": "x", "schema_version": 2, "colour": "red"},
        "rules": [
            {"metric": "dice", "min": 0.5, "atack": "pgd", "engin": "x"},
            {"metric": "dcie", "min": 0.5},
            {"metric": "dice", "min": 0.5, "max": 0.9},
            {"metric": "dice"},
            {"metric": "iou", "min": "high"},
            {"metric": "dice", "min": 0.1, "epsilon_max": "4/256"},
            {"metric": "dice", "min": 0.1, "attack": []},
            "not a table",
        ],
    }
    with pytest.raises(PolicyError) as info:
        policy_from_dict(raw, origin="gate.toml")
    message = str(info.value)
    assert message.startswith("gate.toml: invalid policy")
    for needle in (
        "'polcy'",
        "schema_version 2",
        "'colour'",
        "rule 1: unknown key(s) 'atack', 'engin'",
        "rule 2: unknown metric 'dcie'",
        "valid metrics: " + ", ".join(METRICS),
        "rule 3: give exactly one of 'min' or 'max'",
        "rule 4: one of 'min' or 'max' is required",
        "rule 5: 'min' must be a finite number, got 'high'",
        "rule 6: 'epsilon_max': '4/256'",
        "rule 7: 'attack' must be a name",
        "rule 8: must be a table",
    ):
        assert needle in message, needle
    assert "(11 problem(s))" in message


def test_rule_label_uses_its_name() -> None:
    with pytest.raises(PolicyError, match=r"rule 1 \('mine'\): unknown key\(s\) 'mni'"):
        policy_from_dict({"rules": [{"name": "mine", "metric": "dice", "mni": 0.5, "min": 1}]})


@pytest.mark.parametrize("raw", [{}, {"rules": []}, {"policy": {"name": "x"}}])
def test_empty_rules_rejected(raw: dict) -> None:
    with pytest.raises(PolicyError, match="no rules"):
        policy_from_dict(raw)


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"metric": "ssim_min", "engine": "onnxruntime", "min": 0.9}, "engine-independent"),
        ({"metric": "ssim_min", "attack": ["clean", "pgd"], "min": 0.9}, "no perturbation"),
        ({"metric": "attack_success", "attack": "clean", "max": 0.5}, "no 'attack_success'"),
        ({"metric": "disagreement", "engine": "pytorch", "max": 0.01}, "not defined on the source"),
        ({"metric": "dice", "attack": "clean", "epsilon_max": 0.1, "min": 0.5}, "do not apply"),
        ({"metric": "dice", "epsilon": 0.1, "epsilon_max": 0.2, "min": 0.5}, "cannot be combined"),
        ({"metric": "dice", "epsilon_min": 0.2, "epsilon_max": 0.1, "min": 0.5}, "epsilon_min"),
        ({"metric": "dice", "attack": ["*", "pgd"], "min": 0.5}, "cannot combine '*'"),
        ({"metric": "dice", "epsilon_max": 8, "min": 0.5}, "did you mean '8/255'"),
        ({"metric": "loss", "max": float("inf")}, "'max' must be a finite number"),
    ],
)
def test_unmeasurable_combinations_rejected(rule: dict, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_dict({"rules": [rule]})
    assert needle in str(info.value)


def test_duplicate_rule_names_rejected() -> None:
    rule = {"name": "same", "metric": "dice", "min": 0.5}
    with pytest.raises(PolicyError, match="two rules are named 'same'"):
        policy_from_dict({"rules": [rule, dict(rule)]})


def test_selectors_are_case_insensitive() -> None:
    rule = policy_from_dict({"rules": [{"metric": "DICE", "attack": "PGD", "min": 0.5}]}).rules[0]
    assert rule.metric == "dice"
    assert rule.matches_attack("pgd") and rule.matches_attack("Pgd")
    assert not rule.matches_attack("fgsm")


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=r"nope\.toml: policy file not found"):
        policy_from_toml(path)


def test_toml_syntax_error_names_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[rules]\nmetric = dice\n", name="broken.toml")
    with pytest.raises(PolicyError, match=r"broken\.toml: not valid TOML"):
        policy_from_toml(path)


def test_example_policy_parses_and_matches_examples_copy() -> None:
    packaged = example_policy_path()
    policy = policy_from_toml(packaged)
    assert policy.name == "example"
    assert {r.metric for r in policy.rules} >= {"dice", "disagreement", "attack_success"}
    copy = REPO / "examples" / "policy.toml"
    assert copy.read_text(encoding="utf-8") == packaged.read_text(encoding="utf-8")
