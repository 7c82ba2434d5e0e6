"""The data flow is the layout: no stage of segshield imports a later one (at module level or
inside a function), so a feature can never reach backwards through the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import segshield

ROOT = Path(segshield.__file__).parent
# Shared below every stage, in order; then the pipeline; then the front doors.
ORDER = (
    "errors", "enums", "hashing", "epsilon", "lazy", "imports", "devices",
    "data", "models", "attacks", "exporters", "engines", "bench", "metrics", "results",
    "tasks", "training", "audits", "reports", "gate", "tracking",
    "api", "notebook", "cli", "__main__",
)  # fmt: skip


def _stage(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imported_stages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("segshield.")}
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py") if _stage(p) != "__init__")


def test_every_stage_is_in_the_order() -> None:
    assert {_stage(p) for p in MODULES} <= set(ORDER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stage_imports_a_later_one(path: Path) -> None:
    stage = _stage(path)
    later = set(ORDER[ORDER.index(stage) + 1 :])
    assert not (_imported_stages(path) & later), f"{stage} imports {_imported_stages(path) & later}"
