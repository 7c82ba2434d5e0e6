"""`--help` reads well: every option name whole at 80 columns, options in panels, help texts
shown exactly as written (no rich markup eats "[mlflow]"); `--version`; shell completion,
including the comma lists of --attacks/--losses/--engines."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

import segshield
from segshield.cli import help_format
from segshield.cli.main import app
from segshield.cli.options import complete_list

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = list(GROUP.list_commands(click.Context(GROUP)))
AUDIT_PANELS = ["Model", "Data", "Attacks", "Engines", "Evaluation", "Output & tracking", "Gate"]


def _command(name: str) -> tuple[click.Command, click.Context]:
    """The click command `name` and a context whose parameters are filled ({NAME} markers)."""
    parent = click.Context(GROUP, info_name="segshield")
    cmd = GROUP.get_command(parent, name)
    ctx = click.Context(cmd, info_name=name, parent=parent)
    cmd.get_params(ctx)  # fills the deferred defaults and help texts
    return cmd, ctx


def _help(args: list[str], columns: int) -> str:
    """The help text as shown, without colour codes (FORCE_COLOR in CI adds them)."""
    res = runner.invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    return re.sub(r"\x1b\[[0-9;]*m", "", res.output)


def test_the_app_lists_every_command_in_a_panel() -> None:
    assert set(COMMANDS) >= {"audit", "gate", "report", "compare", "export", "bench", "harden"}
    out = _help([], 80)
    for name in COMMANDS:
        assert re.search(rf"│ {re.escape(name)}\s", out), name
    for panel in ("Audit", "Reports and gate", "Engines", "Training", "Options"):
        assert f"─ {panel} ─" in out
    assert "Exit codes: 0 pass" in out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_name_is_whole_at_80_columns(name: str) -> None:
    out = _help([name], 80)
    assert "…" not in out  # nothing cut with an ellipsis
    assert max(map(len, out.splitlines())) <= 80
    cmd, _ = _command(name)
    flags = [f for p in cmd.params for f in (*p.opts, *p.secondary_opts) if f.startswith("-")]
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out), f"{name}: {flag}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_text_shows_as_written(name: str) -> None:
    """Wide enough for one line per option: each help text is there verbatim (rich markup
    would drop "[mlflow]" or "[tool.segshield]", markdown would eat "*" and "_")."""
    out = _help([name], 1000)
    cmd, _ = _command(name)
    assert cmd.help is not None and help_format.paragraphs(cmd.help)[0] in out
    for param in cmd.params:
        text = getattr(param, "help", None)
        if text:
            assert " ".join(text.split()) in out, f"{name} {param.name}: {text!r}"


def test_brackets_and_markup_characters_survive() -> None:
    out = _help(["audit"], 1000)
    assert 'pip install "segshield[mlflow]"' in out
    assert "pyproject.toml with [tool.segshield])" in out and "\\[" not in out
    assert "ATTACK[:LOSS] (LOSS '*' = the cell's loss)" in out
    assert "'{\"out_channels\": 3}'" in out and "balanced_masked_ce" in out


def test_audit_options_are_grouped_in_panels() -> None:
    out = _help(["audit"], 120)
    titles = [m.group(1) for m in re.finditer(r"╭─ (.+?) ─", out)]
    assert titles == [*AUDIT_PANELS, "Run control"]
    # each option is in its panel: between its title and the next one
    spans = {t: out.index(f"╭─ {t} ─") for t in titles}

    def panel_of(flag: str) -> str:
        at = out.index(f" {flag} ")
        return max((t for t in titles if spans[t] < at), key=spans.get)

    assert panel_of("--calibration-method") == "Engines"
    assert panel_of("--certify-sigma") == "Evaluation"
    assert panel_of("--mlflow-log-engines") == "Output & tracking"
    assert panel_of("--strict") == "Gate" and panel_of("--resume") == "Run control"
    # every option of audit names its panel (a new one without it would land in "Options")
    cmd, _ = _command("audit")
    loose = [p.name for p in cmd.params if not getattr(p, "rich_help_panel", None)]
    assert loose == [], f"audit options without rich_help_panel: {loose}"


def test_plain_click_help_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.core

    monkeypatch.setattr(typer.core, "HAS_RICH", False)
    out = _help(["audit"], 80)
    assert "--calibration-method" in out and "segshield[mlflow]" in out and "╭" not in out


def test_help_of_gate_and_report_stays_torch_free() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from segshield.cli.main import app\n"
        "for c in ('gate', 'report', 'compare'):\n"
        "    assert CliRunner().invoke(app, [c, '--help']).exit_code == 0\n"
        "assert 'torch' not in sys.modules, 'torch loaded by gate/report help'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    import onnxruntime
    import torch

    res = runner.invoke(app, [flag])
    assert res.exit_code == 0, res.output
    first, second = res.output.strip().splitlines()
    assert first == f"segshield {segshield.__version__}"
    assert f"torch {torch.__version__}," in second
    assert f"onnxruntime {onnxruntime.__version__}," in second
    assert importlib.metadata.version("torch") == torch.__version__


@pytest.mark.parametrize(("shell", "needle"), [("bash", "complete_bash"), ("zsh", "compdef")])
def test_show_completion_prints_a_script(
    shell: str, needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # typer's switch from detecting the shell (of the process tree) to naming it
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    res = runner.invoke(app, ["--show-completion", shell])
    assert res.exit_code == 0, res.output
    assert "_SEGSHIELD_COMPLETE" in res.output and needle in res.output
    assert "segshield" in res.output


def _complete(words: str) -> list[str]:
    """What bash completion offers for the last of `words` (the real completion protocol)."""
    env = {
        "_SEGSHIELD_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    res = runner.invoke(app, [], env=env, prog_name="segshield")
    assert res.exit_code == 0, res.output
    return res.output.split()


def test_comma_lists_complete_their_last_item() -> None:
    assert _complete("segshield audit --attacks fgsm,pg") == ["fgsm,pgd", "fgsm,pgdl2"]
    assert _complete("segshield audit --losses dice,dice") == ["dice,dice_focal"]
    engines = _complete("segshield export --engines pytorch,ort-int")
    assert engines == ["pytorch,ort-int8", "pytorch,ort-int8-dynamic"]
    assert "--calibration-method" in _complete("segshield audit --calib")


def test_complete_list_keeps_typed_items_and_skips_repeats() -> None:
    complete = complete_list(lambda: ("a", "ab", "b"))
    assert complete("") == ["a", "ab", "b"]
    assert complete("a,") == ["a,ab", "a,b"]
    assert complete("b, a") == ["b, a", "b, ab"]
    assert complete("a,b,x") == []
