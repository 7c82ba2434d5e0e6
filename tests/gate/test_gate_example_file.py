"""The example policy in examples/ is the one shipped in the package."""

from __future__ import annotations

from pathlib import Path

from segshield.gate import example_policy_path


def test_examples_policy_is_the_packaged_one() -> None:
    repo_copy = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
    assert repo_copy.read_text() == example_policy_path().read_text()
