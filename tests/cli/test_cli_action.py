"""The GitHub Action (action.yml): its inputs and outputs agree with its steps, and its run steps
really run — with the environment a runner gives a composite step (INPUT_* from `env:`,
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_ACTION_PATH) — on the bundled model and data.

The install step is skipped (`install: false`): it would pip install torch and segshield into a
fresh Python (minutes, and the network); the tests use this checkout's .venv instead, put first
on PATH as setup-python would. `uses:` steps (setup-python) are not run here.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACTION = REPO / "action.yml"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# The bundled model on its bundled tiles, as small as the audit goes (a few seconds).
TINY = "--limit 2 --steps 2 --epsilons 8/255 --attacks fgsm --no-bench --no-checks"
PASSING_POLICY = """[policy]
name = "ci-pass"
[[rules]]
metric = "dice"
attack = "clean"
engine = "*"
min = 0.5
"""
FAILING_POLICY = PASSING_POLICY.replace('"ci-pass"', '"ci-fail"').replace("0.5", "0.999")


def load_action() -> dict:
    return yaml.safe_load(ACTION.read_text())


@dataclass
class ActionRun:
    """What a runner would see: the failing step's exit code (0 if none failed), the action's
    outputs as its `outputs:` map them, the job summary, and the steps that ran."""

    exit_code: int
    outputs: dict[str, str]
    summary: str
    ran: list[str]
    log: str


def _evaluate(expr: str, inputs: dict[str, str], steps: dict[str, dict[str, str]]) -> str:
    """The few expressions action.yml may use; anything else fails the test."""
    if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
        assert m[1] in inputs, f"action.yml uses undeclared input {m[1]!r}"
        return inputs[m[1]]
    if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
        return steps.get(m[1], {}).get(m[2], "")
    if expr == "github.action_path":
        return str(REPO)
    raise AssertionError(f"expression the test cannot evaluate: {expr!r}")


def _substitute(text: str, inputs: dict[str, str], steps: dict[str, dict[str, str]]) -> str:
    return EXPR.sub(lambda m: _evaluate(m[1], inputs, steps), str(text))


def _condition(cond: str | None, inputs: dict[str, str]) -> bool:
    """`inputs.x == 'v'` terms joined by &&: what action.yml's `if:`s use."""
    if cond is None:
        return True
    result = True
    for term in EXPR.sub(r"\1", cond).split("&&"):
        m = re.fullmatch(r"\s*inputs\.([\w-]+)\s*(==|!=)\s*'([^']*)'\s*", term)
        assert m, f"condition the test cannot evaluate: {cond!r}"
        assert m[1] in inputs, f"condition uses undeclared input {m[1]!r}"
        result &= (inputs[m[1]] == m[3]) == (m[2] == "==")
    return result


def _read_outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT: `name=value` lines, or `name<<DELIM` ... `DELIM` blocks."""
    outputs, lines = {}, iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            block = []
            for inner in lines:
                if inner == delim:
                    break
                block.append(inner)
            outputs[name] = "\n".join(block)
        elif line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def run_action(given: dict[str, str], workspace: Path, timeout: float = 120) -> ActionRun:
    """Run action.yml's steps as a runner would: inputs = defaults + `with:`; each `run:` step
    under `bash --noprofile --norc -eo pipefail` (GitHub's `shell: bash`) with its own
    GITHUB_OUTPUT file, in the workspace; stop at the first failing step."""
    action = load_action()
    declared = action["inputs"]
    unknown = set(given) - set(declared)
    assert not unknown, f"inputs action.yml does not declare: {sorted(unknown)}"
    inputs = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    inputs.update(given)
    summary = workspace / "_step_summary.md"
    summary.touch()
    steps: dict[str, dict[str, str]] = {}
    ran, log, exit_code = [], [], 0
    for i, step in enumerate(action["runs"]["steps"]):
        if not _condition(step.get("if"), inputs) or "uses" in step:
            continue  # setup-python is not run here (the .venv is this checkout's)
        assert step.get("shell") == "bash", "composite run steps must name their shell"
        outputs_file = workspace / f"_output_{i}"
        outputs_file.touch()
        script = workspace / f"_step_{i}.sh"
        script.write_text(_substitute(step["run"], inputs, steps))
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_ACTION_PATH": str(REPO),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_OUTPUT": str(outputs_file),
            "GITHUB_STEP_SUMMARY": str(summary),
            "PYTHONUNBUFFERED": "1",
        }
        env.update({k: _substitute(v, inputs, steps) for k, v in step.get("env", {}).items()})
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        ran.append(step.get("name", step.get("id", str(i))))
        log.append(proc.stdout + proc.stderr)
        steps[step.get("id", f"_{i}")] = _read_outputs(outputs_file)
        if proc.returncode != 0:
            exit_code = proc.returncode
            break
    outputs = {
        name: _substitute(spec["value"], inputs, steps)
        for name, spec in action.get("outputs", {}).items()
    }
    return ActionRun(exit_code, outputs, summary.read_text(), ran, "\n".join(log))


def test_action_declares_what_its_steps_use() -> None:
    action = load_action()
    text = ACTION.read_text()
    used = set(re.findall(r"inputs\.([\w-]+)", text))
    assert used == set(action["inputs"]), "every input is used and every used input declared"
    for name, spec in action["inputs"].items():
        assert spec.get("description"), name
        assert isinstance(spec.get("default", ""), str), f"{name}: defaults are strings"
    assert action["runs"]["using"] == "composite"
    run_step = next(s for s in action["runs"]["steps"] if s.get("id") == "audit")
    script = (REPO / "scripts" / "action_run.sh").read_text()
    for name, spec in action["outputs"].items():
        assert spec["value"] == f"${{{{ steps.audit.outputs.{name} }}}}", name
        assert f"set_output {name} " in script, f"output {name} is never written"
    for var in run_step["env"]:
        assert var in script, f"{var} is passed to the run step but not read"
    # The run steps stay thin: the logic lives in scripts the tests run.
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step["run"].strip().startswith('bash "$GITHUB_ACTION_PATH/scripts/action_')
    pinned = re.search(r'"torch==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert pinned and f"torch=={pinned[1]} " in action["inputs"]["torch-spec"]["default"]


@pytest.fixture(scope="module")
def passed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ActionRun]:
    """One real audit through the action: bundled model and tiles, two engines, a policy it
    passes. The engine cache is the session's throwaway one (conftest)."""
    workspace = tmp_path_factory.mktemp("action-pass")
    (workspace / "policy.toml").write_text(PASSING_POLICY)
    run = run_action(
        {
            "install": "false",
            "policy": "policy.toml",
            "engines": "pytorch, ort-fp32",
            "out": "audit out",  # a space: every path is quoted on the way
            "baseline": "base/report.json",  # absent, as on the first run: a notice, no compare
            "extra-args": TINY,
        },
        workspace,
    )
    return workspace, run


@pytest.mark.slow
def test_action_pass_writes_outputs_and_summary(passed: tuple[Path, ActionRun]) -> None:
    workspace, run = passed
    assert run.exit_code == 0, run.log
    assert run.ran == ["Audit, gate and compare"]  # install: false skips setup and install
    out = run.outputs
    assert out["verdict"] == "pass" and out["exit-code"] == "0", run.log
    for key, name in [
        ("report-json", "report.json"),
        ("report-html", "report.html"),
        ("report-md", "report.md"),
        ("junit", "junit.xml"),
        ("summary", "summary.md"),
    ]:
        assert out[key] == f"audit out/{name}"
        assert (workspace / out[key]).is_file(), key
    assert out["comparison-md"] == ""
    assert "baseline 'base/report.json' not found" in run.log
    assert "--engines pytorch,ort-fp32" in run.log and "--strict" in run.log
    assert run.summary == (workspace / out["summary"]).read_text()
    assert "ci-pass" in run.summary


@pytest.mark.slow
def test_action_failed_gate_fails_the_step_and_compares(
    passed: tuple[Path, ActionRun], tmp_path: Path
) -> None:
    base_workspace, base = passed
    (tmp_path / "policy.toml").write_text(FAILING_POLICY)
    run = run_action(
        {
            "install": "false",
            "policy": "policy.toml",
            "engines": "pytorch",
            "baseline": str(base_workspace / base.outputs["report-json"]),
            "extra-args": TINY.replace("--limit 2", "--limit 1"),
        },
        tmp_path,
    )
    assert run.exit_code == 1, run.log
    assert run.outputs["verdict"] == "fail" and run.outputs["exit-code"] == "1"
    assert run.outputs["report-json"] == "segshield-out/report.json"  # the default out
    assert (tmp_path / run.outputs["junit"]).is_file()
    comparison = tmp_path / run.outputs["comparison-md"]
    assert run.outputs["comparison-md"] == "segshield-out/compare/comparison.md"
    # The job summary: the audit's summary, then the comparison with the baseline.
    summary = (tmp_path / run.outputs["summary"]).read_text()
    assert run.summary == summary + "\n" + comparison.read_text()
    assert comparison.read_text().startswith("**segshield compare:")


@pytest.mark.slow
def test_action_fail_on_gate_false_keeps_the_step_green(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(FAILING_POLICY)
    tiny = TINY.replace("--limit 2", "--limit 1").replace("--steps 2", "--steps 1")
    run = run_action(
        {
            "install": "false",
            "policy": "policy.toml",
            "engines": "pytorch",
            "fail-on-gate": "false",
            "extra-args": tiny,
        },
        tmp_path,
    )
    assert run.exit_code == 0, run.log
    assert run.outputs["verdict"] == "fail" and run.outputs["exit-code"] == "1"


def test_action_bad_input_is_an_error(tmp_path: Path) -> None:
    run = run_action(
        {"install": "false", "data": "no-such-folder", "fail-on-gate": "false"}, tmp_path
    )
    # An error fails the step even with fail-on-gate: false: a crash never passes as green.
    assert run.exit_code == 2, run.log
    assert run.outputs["verdict"] == "error" and run.outputs["exit-code"] == "2"
    assert "dataset folder no-such-folder does not exist" in run.log
    for key in ("report-json", "report-html", "report-md", "junit", "summary"):
        assert run.outputs[key] == "", key  # nothing written: no path to a file that is not there
    assert run.summary.startswith("### segshield audit: error (exit 2)")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"strict": "yes"}, "input strict must be 'true' or 'false', got 'yes'"),
        ({"fail-on-gate": "maybe"}, "input fail-on-gate must be 'true' or 'false'"),
        ({"extra-args": "--limit '2"}, "extra-args cannot be split"),
        ({"model": "action.yml", "weights": "w.safetensors"}, "set only one"),
    ],
)
def test_action_rejects_inputs_it_cannot_use(
    tmp_path: Path, given: dict[str, str], message: str
) -> None:
    (tmp_path / "action.yml").write_text("a file standing in for a whole-model file\n")
    run = run_action({"install": "false", **given}, tmp_path)
    assert run.exit_code == 2, run.log
    assert run.outputs["verdict"] == "error"
    error = next(line for line in run.log.splitlines() if line.startswith("::error::"))
    assert error.startswith("::error::segshield action: ") and message in error, error


def _docker_instructions() -> list[tuple[str, str]]:
    """The Dockerfile parsed by scripts/docker_steps_check.py (the no-Docker rehearsal)."""
    spec = importlib.util.spec_from_file_location(
        "docker_steps_check", REPO / "scripts" / "docker_steps_check.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.instructions(REPO / "Dockerfile")


def test_dockerfile_agrees_with_pyproject_and_the_action() -> None:
    """The image can only be built where Docker runs; its pins are checked here everywhere."""
    steps = _docker_instructions()
    pyproject = (REPO / "pyproject.toml").read_text()
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert f'"torch=={args["TORCH_VERSION"]}"' in pyproject
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    base = re.fullmatch(r"python:(3\.\d+)-slim", steps[0][1])
    assert steps[0][0] == "FROM" and base, steps[0]
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', pyproject)
    assert minimum and int(base[1].split(".")[1]) >= int(minimum[1])
    assert base[1] == load_action()["inputs"]["python-version"]["default"]
    script = re.search(r"\[project\.scripts\]\n(\S+) = ", pyproject)
    assert script and ("ENTRYPOINT", f'["{script[1]}"]') in steps
    assert ("CMD", '["audit", "--help"]') in steps
    assert any(op == "USER" and a != "root" for op, a in steps), "the image runs as non-root"
    # torch is installed first, then segshield under a constraint holding that torch.
    runs = [a for op, a in steps if op == "RUN"]
    assert runs[0].startswith('pip install "torch==${TORCH_VERSION}" --index-url')
    assert "-c /tmp/torch.txt" in runs[1]


def _ignored(name: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for top-level names: the last matching pattern wins."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(name, pattern.lstrip("!").rstrip("/")):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        src for op, a in _docker_instructions() if op == "COPY" for src in shlex.split(a)[:-1]
    ]
    assert copied and not any(_ignored(src, patterns) for src in copied), copied
    for name in (".venv", ".git", "segshield-out", ".pytest_cache", "tests", "benchmarks"):
        assert _ignored(name, patterns), name
