"""Settings files: segshield.toml and [tool.segshield]; CLI overrides; every bad field listed."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segshield.audits.config import AuditConfig
from segshield.audits.settings import (
    MODEL_FIELDS,
    SETTINGS,
    SettingsError,
    coercer,
    config_from_settings,
    load_settings,
    resolve_audit_config,
)
from segshield.cli.main import app
from segshield.models import ModelSpec

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


def test_every_config_field_is_a_setting_or_explicitly_excluded() -> None:
    """The schema is AuditConfig: a new field is a setting unless it opts out or is the model."""
    hints = typing.get_type_hints(AuditConfig)
    for f in dataclasses.fields(AuditConfig):
        if hints[f.name] is ModelSpec:  # set through model, weights, trust_pickle, model_kwargs
            assert set(MODEL_FIELDS) <= set(SETTINGS)
            continue
        excluded = f.metadata.get("setting", True) is False
        assert (f.name in SETTINGS) != excluded, f"{f.name}: type {hints[f.name]} not supported"


def test_a_new_config_field_is_accepted_without_editing_settings(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Wider:
        ratio: float = 0.5
        names: tuple[str, ...] = ()
        sizes: tuple[int, ...] = (1,)
        where: Path | None = None
        hidden: int = dataclasses.field(default=0, metadata={"setting": False})

    hints = typing.get_type_hints(Wider, localns={"Path": Path})
    checks = {f.name: coercer(hints[f.name]) for f in dataclasses.fields(Wider)}
    assert checks["ratio"](1) == 1.0 and checks["names"]("a, b") == ("a", "b")
    assert checks["sizes"]("1,8") == (1, 8) and checks["sizes"]([2]) == (2,)
    assert checks["where"]("x") == Path("x") and checks["where"](None) is None
    with pytest.raises(ValueError, match="expected a number"):
        checks["ratio"](True)
    # every AuditConfig field of a supported type is a setting today
    path = tmp_path / "segshield.toml"
    path.write_text("[audit]\nbench_batch_sizes = [1, 4]\nfooled-threshold = 0.3\n")
    assert load_settings(path).audit == {"bench_batch_sizes": (1, 4), "fooled_threshold": 0.3}


def test_all_bad_fields_of_every_kind_are_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "segshield.toml"
    path.write_text(
        "[audit]\nlimit = 1.5\nalpha = 'big'\nbench = 'yes'\nlosses = [1]\nengines = []\n"
        "data = 3\nmodel_kwargs = 'x'\nbench_batch_sizes = ['a']\nepsilons = ['2/0', 9]\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    msg = str(info.value)
    for needle in (
        "audit.limit: expected int, got 1.5",
        "audit.alpha: expected a number",
        "audit.bench: expected true or false",
        "audit.losses: expected a list of names",
        "audit.engines: expected a non-empty list",
        "audit.data: expected a string (a path)",
        "audit.model_kwargs: expected a table",
        "audit.bench_batch_sizes: expected int",
        "audit.epsilons: '2/0' divides by zero; 9 is > 1",
    ):
        assert needle in msg, needle
    assert msg.count("\n  - ") == 9


def test_resolve_audit_config_merges_file_and_options(tmp_path: Path) -> None:
    (tmp_path / "segshield.toml").write_text(SEGSHIELD_TOML)
    cfg, settings = resolve_audit_config(
        {"steps": 4, "epsilons": "default", "attacks": "fgsm,pgd", "data": Path("rel")},
        search_dir=tmp_path,
    )
    assert settings.origin == tmp_path / "segshield.toml" and settings.policy is not None
    assert cfg.steps == 4 and cfg.attacks == ("fgsm", "pgd") and cfg.limit == 1
    assert cfg.epsilons == (1 / 255, 2 / 255, 4 / 255, 8 / 255)
    assert cfg.out_dir == tmp_path / "out" and cfg.data == Path("rel")  # options: as given
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg, settings = resolve_audit_config({}, search_dir=empty)
    assert settings.origin is None and cfg == AuditConfig(out_dir=Path("segshield-out"))


def test_resolve_audit_config_lists_every_bad_option(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        resolve_audit_config(
            {"epsilons": "2/0", "steps": "3", "stepz": 1},
            search_dir=tmp_path,
            labels={"epsilons": "--epsilons"},
        )
    msg = str(info.value)
    assert "--epsilons: '2/0' divides by zero" in msg
    assert "steps: expected int" in msg and "stepz: unknown setting" in msg
    with pytest.raises(SettingsError, match=r"invalid settings in .*\n  - the pytorch engine"):
        resolve_audit_config({"engines": "ort-fp32"}, search_dir=tmp_path)
    with pytest.raises(SettingsError) as info:
        resolve_audit_config({"engines": "pytorch,tensorrt-9"}, search_dir=tmp_path)
    # AuditConfig's "unknown engine 'x'; valid engines: ..." stays one problem
    assert "\n  - unknown engine 'tensorrt-9'; valid engines: pytorch," in str(info.value)
    assert str(info.value).count("\n  - ") == 1


def test_file_option_and_config_problems_are_listed_in_one_error(tmp_path: Path) -> None:
    (tmp_path / "segshield.toml").write_text(
        "[audit]\nstepz = 3\nlimit = 0\nthreshold = 1.5\nfooled_threshold = 2.0\n"
        "health_ok_min = 0.5\nseed = -1\n"
    )
    with pytest.raises(SettingsError) as info:
        resolve_audit_config(
            {"epsilons": "2/0", "engines": "ort-fp32"},
            search_dir=tmp_path,
            labels={"epsilons": "--epsilons", "engines": "--engines"},
        )
    msg = str(info.value)
    for needle in (
        "segshield.toml and the command-line options",
        "audit.stepz: unknown setting; did you mean 'steps'?",  # the file's fields ...
        "audit.limit: expected an int >= 1, got 0",  # ... and their ranges,
        "audit.seed: expected an int >= 0, got -1",
        "--epsilons: '2/0' divides by zero",  # the options,
        "the pytorch engine (the attacked source model) is always needed",  # AuditConfig's:
        "threshold must be in (0, 1), got 1.5",  # every one, not only the first
        "fooled_threshold must be in (0, 1], got 2.0",
        "health thresholds need",
    ):
        assert needle in msg, needle
    assert msg.count("\n  - ") == 8


@pytest.mark.parametrize(
    ("name", "body", "label"),
    [
        ("segshield.toml", "[audit]\ntrust_pickle = true\n", "audit.trust_pickle"),
        ("segshield.toml", "[audit]\ntrust-pickle = false\n", "audit.trust-pickle"),
        (
            "pyproject.toml",
            "[tool.segshield.audit]\ntrust_pickle = true\n",
            "tool.segshield.audit.trust_pickle",
        ),
    ],
)
def test_a_settings_file_cannot_trust_pickles(
    tmp_path: Path, name: str, body: str, label: str
) -> None:
    (tmp_path / name).write_text(body)
    with pytest.raises(SettingsError) as info:
        resolve_audit_config({}, search_dir=tmp_path)
    msg = str(info.value)
    assert f"{label}: a settings file cannot allow unpickling" in msg
    assert "pass --trust-pickle on the command line" in msg
    with pytest.raises(SettingsError, match="cannot allow unpickling"):
        load_settings(search_dir=tmp_path)


def test_only_the_command_line_trusts_pickles(tmp_path: Path) -> None:
    cfg, _ = resolve_audit_config({"trust_pickle": True}, search_dir=tmp_path)
    assert cfg.model.allow_pickle is True
    assert cfg.to_dict()["model"]["allow_pickle"] is True  # what report.config.model records
    cfg, _ = resolve_audit_config({}, search_dir=tmp_path)
    assert cfg.model.allow_pickle is False


def test_an_unusable_output_folder_is_a_settings_problem(tmp_path: Path) -> None:
    from segshield.audits.settings import output_dir_problem

    a_file = tmp_path / "report.json"
    a_file.write_text("{}")
    with pytest.raises(SettingsError, match=r"--out: .*report\.json exists and is not a folder"):
        resolve_audit_config({"out_dir": a_file}, search_dir=tmp_path, labels={"out_dir": "--out"})
    assert "is a file" in output_dir_problem(a_file / "sub")
    assert output_dir_problem(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists()  # the check creates nothing


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_output_folder_is_refused() -> None:
    from segshield.audits.settings import output_dir_problem

    # /proc refuses new files even to root (a chmod-ed folder would not stop root).
    assert "cannot write into /proc" in output_dir_problem(Path("/proc/segshield-out/x"))


def test_inline_policy_problems_join_the_settings_error(tmp_path: Path) -> None:
    (tmp_path / "segshield.toml").write_text(
        '[audit]\nstepz = 1\n[[rules]]\nmetric = "dcie"\nmin = 0.5\n'
    )
    seen = []

    def check(raw, origin):
        seen.append((raw, origin))
        return ["rule 1: unknown metric 'dcie'"]

    with pytest.raises(SettingsError) as info:
        resolve_audit_config({}, search_dir=tmp_path, check_policy=check)
    msg = str(info.value)
    assert "audit.stepz: unknown setting" in msg and "rule 1: unknown metric 'dcie'" in msg
    assert seen == [({"rules": [{"metric": "dcie", "min": 0.5}]}, str(tmp_path / "segshield.toml"))]


def test_an_explicit_pyproject_without_the_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n')
    with pytest.raises(SettingsError, match=r"has no \[tool\.segshield\] table"):
        load_settings(path)
    assert load_settings(search_dir=tmp_path).origin is None  # found, not named: not settings
