"""Auditing an engine built outside segshield (`AuditConfig.engine_files`): ONNX files written
by plain `torch.onnx.export` go through parity, health and every cell like the engines
segshield builds; files that do not fit the data stop the audit with a one-line error before
anything is built. Real nuclei tiles, real ONNX Runtime, an in-memory model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from segshield.audits import AuditConfig, run_audit
from segshield.audits.settings import resolve_audit_config
from segshield.errors import SegShieldError
from segshield.lazy import tensorrt_unavailable_reason
from segshield.models import LoadedModel

SIZE = 64  # the nuclei tiles resized: small enough for a quick audit
FAST = {
    "engines": ("pytorch",),
    "size": SIZE,
    "limit": 2,
    "steps": 2,
    "epsilons": (8 / 255,),
    "attacks": ("fgsm",),
    "bench": False,
    "checks": False,
    "n_boot": 0,
    "panels": 0,
}
NO_TRT = tensorrt_unavailable_reason() is not None


def _export(model: nn.Module, example: torch.Tensor, path: Path, **kwargs: object) -> Path:
    """Plain torch.onnx.export, as a team outside segshield would run it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), verbose=False, **kwargs)
    return path


def _model(unet_factory, in_ch: int = 1) -> nn.Module:
    """The tiny U-Net with `in_ch` input channels and one logit channel (binary nuclei)."""
    torch.manual_seed(0)
    return type(unet_factory())(in_ch=in_ch, classes=1).eval()


def _audit(out: Path, model: nn.Module, files: tuple[Path, ...], **kw: object):
    config = AuditConfig(out_dir=out, engine_files=files, **(FAST | kw))
    return run_audit(config, command="pytest", model=LoadedModel(model, {"source": "test"}))


@pytest.fixture(scope="module")
def audited(tmp_path_factory, unet_factory):
    """One audit of two ONNX files exported outside segshield (dynamo with its defaults:
    batch fixed at 1; TorchScript with dynamic axes) and, where TensorRT is missing, a plan."""
    root = tmp_path_factory.mktemp("engine-file")
    model = _model(unet_factory)
    x = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    axes = {0: "n", 2: "h", 3: "w"}
    files = [
        _export(model, x, root / "team_dynamo.onnx", dynamo=True, external_data=False),
        _export(model, x, root / "team_ts.onnx", dynamo=False, input_names=["x"],
                output_names=["y"], dynamic_axes={"x": axes, "y": axes}),
    ]  # fmt: skip
    if NO_TRT:
        files.append(root / "team.plan")
        files[-1].write_bytes(b"a TensorRT plan this machine cannot run")
    report = _audit(root / "out", model, tuple(files))
    return report, files


@pytest.mark.slow
def test_engine_files_are_audited_like_every_engine(audited):
    report, files = audited
    by_name = {e.name: e for e in report.engines}
    assert list(by_name)[:3] == ["pytorch", "file:team_dynamo", "file:team_ts"]
    for name, path in (("file:team_dynamo", files[0]), ("file:team_ts", files[1])):
        record = by_name[name]
        assert (record.status, record.kind, record.precision) == ("ok", "onnxruntime", "fp32")
        assert record.details["external"] is True and record.artifact == str(path)
        # Parity measured against the source on the audited images, no stored value to keep.
        assert record.parity["n_images"] == 2 and "manifest" not in record.parity
        assert record.parity["prob_max_abs_err"] < 1e-4 and record.parity["mask_dice"] == 1.0
        assert record.health["status"] == "ok" and record.health["n_images"] == 2
    assert by_name["file:team_dynamo"].details["fixed_batch"] == 1
    assert by_name["file:team_ts"].details["dynamic_hw"] is True


@pytest.mark.slow
def test_every_cell_replays_on_the_engine_files(audited):
    report, _ = audited
    (cell,) = report.cells
    source = cell.engines["pytorch"].metrics.dice
    for name in ("file:team_dynamo", "file:team_ts"):
        evaluation = cell.engines[name]
        assert evaluation.status == "ok"
        assert evaluation.metrics.dice == pytest.approx(source, abs=1e-3)
    assert report.clean["file:team_ts"].metrics.dice == pytest.approx(
        report.clean["pytorch"].metrics.dice, abs=1e-3
    )


@pytest.mark.slow
def test_the_report_keeps_the_files_and_serialises(audited):
    report, files = audited
    assert report.config["engine_files"] == [str(p) for p in files]
    engines = [e.to_dict() for e in report.engines]
    assert json.loads(json.dumps(engines)) == engines


@pytest.mark.slow
@pytest.mark.skipif(not NO_TRT, reason="TensorRT is usable here: the plan would be read")
def test_a_plan_without_tensorrt_is_unavailable_and_loses_nothing(audited):
    report, _ = audited
    plan = next(e for e in report.engines if e.name == "file:team")
    assert (plan.status, plan.kind) == ("unavailable", "tensorrt")
    assert plan.reason.startswith("TensorRT is not usable here; cannot audit team.plan")
    assert plan.parity is None
    # The other engine files still ran every cell.
    assert report.cells[0].engines["file:team_ts"].status == "ok"


# -------------------------------------------------------------------- files that do not fit


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("rgb", r"takes 3-channel images .* audited images have 1 channel"),
        ("fixed32", r"takes 32x32 images .* audited images are 64x64; .*--size 32"),
        ("two_inputs", r"has 2 inputs \('image' .*'prior'"),
        ("junk", r"junk.onnx is not a readable ONNX model"),
        ("missing", r"engine file not found: .*missing.onnx"),
    ],
)
def test_a_file_that_does_not_fit_stops_the_audit_before_any_build(
    tmp_path, unet_factory, case, match
):
    model = _model(unet_factory)
    path = tmp_path / f"{case}.onnx"
    if case == "rgb":
        _export(_model(unet_factory, in_ch=3), torch.rand(1, 3, SIZE, SIZE), path, dynamo=False)
    elif case == "fixed32":
        _export(model, torch.rand(1, 1, 32, 32), path, dynamo=False)
    elif case == "two_inputs":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_TwoInputs(), (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)),
                              str(path), dynamo=False, input_names=["image", "prior"])  # fmt: skip
    elif case == "junk":
        path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(SegShieldError, match=match) as info:
        _audit(tmp_path / "out", model, (path,), engines=("pytorch", "ort-fp32"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "engines").exists()  # nothing was built


class _TwoInputs(nn.Module):
    def forward(self, image: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        return image * prior


# ------------------------------------------------------------------------------ settings


def test_engine_files_are_checked_by_suffix_and_listed_once(tmp_path):
    with pytest.raises(ValueError, match=r"model.pt is not an engine file; expected a .onnx"):
        AuditConfig(out_dir=tmp_path, engine_files=(tmp_path / "model.pt",))
    with pytest.raises(ValueError, match=r"lists .*a.onnx more than once"):
        AuditConfig(out_dir=tmp_path, engine_files=(tmp_path / "a.onnx", tmp_path / "a.onnx"))
    config = AuditConfig(out_dir=tmp_path, engine_files=(str(tmp_path / "a.onnx"), "b.PLAN"))
    assert config.engine_files == (tmp_path / "a.onnx", Path("b.PLAN"))
    assert config.to_dict()["engine_files"] == [str(tmp_path / "a.onnx"), "b.PLAN"]


def test_engine_files_in_a_settings_file_are_relative_to_it(tmp_path):
    (tmp_path / "segshield.toml").write_text(
        '[audit]\nengine_files = ["engines/team.onnx", "/abs/team.plan"]\n'
    )
    config, _ = resolve_audit_config({}, search_dir=tmp_path)
    assert config.engine_files == (tmp_path / "engines" / "team.onnx", Path("/abs/team.plan"))
    config, _ = resolve_audit_config({"engine_files": ["cli.onnx"]}, search_dir=tmp_path)
    assert config.engine_files == (Path("cli.onnx"),)  # options: as given


@pytest.mark.slow
def test_the_cli_audits_an_engine_file_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    """`segshield audit --engine-file`: the bundled model's own export, written by plain
    torch.onnx.export; a 3-channel file is a one-line error with exit 2."""
    from typer.testing import CliRunner

    from segshield.cli.main import app
    from segshield.models import bundled_model

    model = bundled_model().module
    good = _export(model, torch.rand(1, 1, SIZE, SIZE), tmp_path / "shipped.onnx", dynamo=False,
                   input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    args = ["audit", "--size", str(SIZE), "--limit", "2", "--attacks", "fgsm", "--epsilons",
            "8/255", "--engines", "pytorch", "--no-bench", "--no-checks"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--engine-file", str(good)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    record = next(e for e in report["engines"] if e["name"] == "file:shipped")
    assert record["status"] == "ok"
    assert report["config"]["engine_files"] == [str(good)]
    assert report["cells"][0]["engines"]["file:shipped"]["metrics"]["dice"] is not None
    torch.manual_seed(0)
    rgb = nn.Conv2d(3, 1, 3, padding=1).eval()
    bad = _export(rgb, torch.rand(1, 3, SIZE, SIZE), tmp_path / "rgb.onnx", dynamo=False)
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--engine-file", str(bad)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "3" in res.output and "1" in res.output and "rgb.onnx" in res.output
