"""Settings files: segshield.toml and [tool.segshield]; CLI overrides; every bad field listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.audits.settings import (
    SettingsError,
    config_from_settings,
    load_settings,
)
from segshield.cli.main import app

SEGSHIELD_TOML = """
[audit]
attacks = ["fgsm"]
epsilons = ["1/255", 0.5]
engines = ["pytorch"]
limit = 1
steps = 2
out_dir = "out"

[policy]
name = "from-file"

[[rules]]
metric = "dice"
attack = "clean"
min = 0.99
"""


def test_segshield_toml_is_found_and_validated(tmp_path: Path) -> None:
    (tmp_path / "segshield.toml").write_text(SEGSHIELD_TOML)
    s = load_settings(search_dir=tmp_path)
    assert s.origin == tmp_path / "segshield.toml"
    assert s.audit["epsilons"] == (1 / 255, 0.5)
    assert s.policy["policy"]["name"] == "from-file"
    cfg = config_from_settings(s.audit, {"steps": 5}, base_dir=tmp_path)
    assert cfg.steps == 5 and cfg.attacks == ("fgsm",)  # the override wins, the rest stays
    assert cfg.out_dir == tmp_path / "out"  # relative to the settings file


def test_pyproject_tool_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_settings(search_dir=tmp_path).origin is None
    (tmp_path / "pyproject.toml").write_text(
        '[tool.segshield.audit]\nlosses = ["dice", "bce"]\nseed = 7\n'
    )
    s = load_settings(search_dir=tmp_path)
    assert s.audit == {"losses": ("dice", "bce"), "seed": 7} and s.policy is None


def test_every_bad_field_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "segshield.toml"
    path.write_text(
        '[audit]\nattacks = "fgsm"\nstepz = 3\nsize = "big"\nepsilons = ["x"]\n'
        "trust_pickle = 1\n[extras]\na = 1\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    msg = str(info.value)
    for needle in (
        "audit.stepz: unknown setting",
        "audit.size: expected int",
        "audit.epsilons",
        "audit.trust_pickle",
        "extras: unknown table",
    ):
        assert needle in msg, needle


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "segshield.toml"
    bad.write_text("[audit\n")
    with pytest.raises(SettingsError, match="cannot read settings"):
        load_settings(bad)


def test_cli_uses_the_file_and_options_override_it(tmp_path: Path) -> None:
    cfg = tmp_path / "segshield.toml"
    cfg.write_text(SEGSHIELD_TOML)
    out = tmp_path / "o"
    res = CliRunner().invoke(
        app, ["audit", "--config", str(cfg), "--out", str(out), "--epsilons", "2/255"]
    )
    # the policy from the file demands clean Dice >= 0.99: the bundled model has 0.93-ish
    assert res.exit_code == 1, res.output
    report = json.loads((out / "report.json").read_text())
    assert [c["id"] for c in report["cells"]] == [f"fgsm/bce/{2 / 255:.6g}"]
    assert report["config"]["steps"] == 2 and report["verdict"]["policy_name"] == "from-file"
