"""`segshield compare` on the reports of two real audits: the bundled model (fgsm and pgd)
against a second model that predicts no foreground (fgsm only), so Dice drops significantly
and the pgd cells are in the base only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from segshield.api import audit, compare_report_files
from segshield.audits import AuditConfig
from segshield.cli.main import app
from segshield.models import ModelSpec

runner = CliRunner()
QUICK = {
    "limit": 2,
    "epsilons": (2 / 255, 8 / 255),
    "steps": 2,
    "engines": ("pytorch",),
    "bench": False,
    "panels": 0,
    "probe_images": 2,
}
# A seeded 1x1 convolution whose bias keeps every logit negative: no foreground, Dice 0.
FACTORY = """
import torch
from torch import nn


def blind(**kw):
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.mul_(0.1)
        model.bias.fill_(-20.0)
    return model.eval()
"""


@dataclass
class Audits:
    base: Path  # bundled model, fgsm + pgd
    new: Path  # the blind model, fgsm only


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory) -> Audits:
    root = tmp_path_factory.mktemp("compare")
    (root / "compare_factories.py").write_text(FACTORY)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        audit(AuditConfig(out_dir=root / "base", attacks=("fgsm", "pgd"), **QUICK))
        spec = ModelSpec(factory="compare_factories:blind")
        audit(AuditConfig(out_dir=root / "new", model=spec, attacks=("fgsm",), **QUICK))
    return Audits(root / "base" / "report.json", root / "new" / "report.json")


def _app() -> typer.Typer:
    """segshield's own app (compare is registered in segshield.cli.main)."""
    return app


def test_a_significant_dice_drop_fails_only_with_the_flag(audits: Audits, tmp_path: Path) -> None:
    args = ["compare", str(audits.base), str(audits.new)]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("**segshield compare: ")
    assert "significant Dice drop" in res.output and "▼ significant drop" in res.output
    assert "Cells only in base: pgd/" in res.output
    out = tmp_path / "cmp"
    res = runner.invoke(_app(), [*args, "--out", str(out), "--fail-on-regression"])
    assert res.exit_code == 1, res.output
    raw = json.loads((out / "comparison.json").read_text())
    assert raw["kind"] == "segshield.comparison" and raw["schema_version"] == 1
    assert raw["summary"]["regressions"] >= 1
    assert raw["new"]["model"] != raw["base"]["model"]
    clean = next(r for r in raw["rows"] if r["id"] == "clean")
    assert clean["regression"] and clean["metrics"]["dice"]["new"] == 0.0
    assert {r["id"].split("/")[0] for r in raw["rows"]} == {"clean", "fgsm", "worst_case"}
    assert all(c.startswith("pgd/") for c in raw["missing"]["cells_only_in_base"])
    assert (
        len(raw["missing"]["cells_only_in_base"]) == 2 and not raw["missing"]["cells_only_in_new"]
    )
    md = (out / "comparison.md").read_text()
    assert md.splitlines()[0] == res.output.splitlines()[0]
    html = (out / "comparison.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'class="drop"' in html


def test_the_same_report_or_an_improvement_passes(audits: Audits) -> None:
    res = runner.invoke(
        _app(), ["compare", str(audits.base), str(audits.base), "--fail-on-regression"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith(
        "**segshield compare: 0 significant Dice drops, 0 improvements, 0 cells only"
    )
    res = runner.invoke(
        _app(), ["compare", str(audits.new), str(audits.base), "--fail-on-regression"]
    )
    assert res.exit_code == 0, res.output
    assert "▲ significant rise" in res.output and "Cells only in new: pgd/" in res.output


def test_the_api_reads_verified_reports(audits: Audits) -> None:
    cmp = compare_report_files(audits.base, audits.new, None)
    assert cmp.regressed and cmp.base.weights_sha256 and cmp.base.started_at
    assert cmp.base.data_sha256 == cmp.new.data_sha256 and not cmp.notes


def test_bad_input_is_exit_2(audits: Audits, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    res = runner.invoke(_app(), ["compare", str(missing), str(audits.new)])
    assert res.exit_code == 2 and "report file not found" in res.output
    not_a_report = tmp_path / "x.json"
    not_a_report.write_text('{"hello": 1}')
    res = runner.invoke(_app(), ["compare", str(audits.base), str(not_a_report)])
    assert res.exit_code == 2 and "error:" in res.output
    edited = json.loads(audits.new.read_text())
    edited["clean"]["pytorch"]["metrics"]["dice"] = 0.99
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(edited))
    res = runner.invoke(
        _app(), ["compare", str(audits.base), str(changed), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "refused" in res.output, res.output
    assert not (tmp_path / "o" / "comparison.json").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    res = runner.invoke(
        _app(), ["compare", str(audits.base), str(audits.new), "--out", str(a_file)]
    )
    assert res.exit_code == 2 and "--out" in res.output
