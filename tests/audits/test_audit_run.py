"""run_audit: the real pipeline on the bundled model and real data; failure isolation."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segshield.audits import AuditConfig, AuditReport, run_audit
from segshield.errors import DataError, ModelOutputError
from segshield.models import ModelSpec

FAST = {
    "limit": 2,
    "epsilons": (2 / 255, 8 / 255),
    "steps": 2,
    "engines": ("pytorch",),
    "bench": False,
}


def test_e2e_report_is_complete(cli_audit) -> None:
    """The CLI run (conftest) audited PyTorch and the real CPU engine matrix."""
    report = AuditReport.from_dict(cli_audit.report)
    assert report.schema_version == 2 and report.task == "binary"
    assert [c.id for c in report.cells] == [
        f"{a}/bce/{e:.6g}" for a in ("fgsm", "bim", "pgd") for e in (2 / 255, 8 / 255)
    ]
    engines = {e.name: e for e in report.engines}
    assert list(engines) == ["pytorch", "ort-fp32", "ort-fp16", "ort-int8", "aoti-fp32"]
    assert all(e.status == "ok" for e in engines.values()), [e.reason for e in engines.values()]
    for name in ("ort-fp32", "ort-fp16", "ort-int8"):
        assert engines[name].providers == ["CPUExecutionProvider"]
        assert engines[name].notes and len(engines[name].sha256) == 64
    # clean parity with the source, per precision
    assert engines["ort-fp32"].parity["prob_max_abs_err"] < 1e-5
    assert engines["aoti-fp32"].parity["prob_max_abs_err"] < 1e-5
    assert engines["ort-fp16"].parity["flip_share"] < 1e-3
    assert engines["ort-int8"].parity["flip_share"] < 0.02
    # health: every engine's clean masks against the source's on every audited image
    for name, record in engines.items():
        assert record.health["status"] == "ok", (name, record.health)
        assert record.health["n_images"] == 2
    assert any("FP32" in n or "fp32" in n.lower() for n in engines["ort-fp16"].notes)
    assert report.build["calibration"]["source"] == "bundled:nuclei/train"
    # latency of every engine at batch 1 and 8
    assert {(r["engine"], r["batch_size"]) for r in report.latency} == {
        (e, b) for e in engines for b in (1, 8)
    }
    assert all(r["status"] == "ok" and r["median_ms"] > 0 for r in report.latency)
    prov = report.provenance
    for key in ("weights_sha256", "onnx_sha256", "data_sha256"):
        assert len(prov[key]) == 64, key
    assert prov["torch"].startswith("2.13") and prov["onnxruntime"]
    assert report.dataset["n_images"] == 2
    for cell in report.cells:
        assert cell.status == "ok", cell.error
        assert cell.perturbation.linf_max <= cell.epsilon + 1e-6
        assert 0.0 < cell.perturbation.ssim_mean <= 1.0
        src, eng = cell.engines["pytorch"], cell.engines["ort-fp32"]
        # FP32 ORT replays the adversarial images almost exactly like the source.
        assert eng.disagreement < 1e-3
        assert abs(eng.metrics.dice - src.metrics.dice) < 1e-2
        for name in ("ort-fp16", "ort-int8", "aoti-fp32"):
            ev = cell.engines[name]
            assert ev.status == "ok" and 0.0 <= ev.fooled_source_only <= 1.0
            assert 0.0 <= ev.fooled_engine_only <= 1.0
        assert len(src.per_image.dice) == 2
    pgd8 = next(c for c in report.cells if c.attack == "pgd" and c.epsilon > 0.03)
    # bootstrap CIs bracket the point estimate; attack success has a paired CI
    ev = pgd8.engines["pytorch"]
    assert ev.ci["dice"].low <= ev.metrics.dice + 1e-9 <= ev.ci["dice"].high + 2e-9
    assert ev.ci["attack_success"].n_boot == 1000
    assert sum(ev.per_image.tp) == ev.metrics.tp
    # image panels of the worst-hit images are written and referenced relative to the report
    assert len(pgd8.panels) == 2
    panel = pgd8.panels[0]
    assert (cli_audit.out_dir / panel.file).is_file()
    assert panel.columns[:4] == [
        "clean image",
        "perturbation (amplified)",
        "adversarial image",
        "ground truth",
    ]
    assert panel.dice_clean - panel.dice_adv >= pgd8.panels[1].dice_clean - pgd8.panels[1].dice_adv
    clean_dice = report.clean["pytorch"].metrics.dice
    assert pgd8.engines["pytorch"].metrics.dice < clean_dice
    assert pgd8.engines["pytorch"].attack_success > 0.0
    # transfer ratio = engine AS / source AS; FP32 engines transfer the attack fully
    assert pgd8.engines["ort-fp32"].transfer_ratio == pytest.approx(1.0, abs=0.01)
    assert pgd8.engines["ort-int8"].transfer_ratio is not None


def test_metrics_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    reports = [
        run_audit(AuditConfig(tmp_path / str(b), attacks=("fgsm",), batch_size=b, **FAST))
        for b in (1, 2)
    ]
    a, b = (r.cells[1].engines["pytorch"].metrics for r in reports)
    for key in ("dice", "iou", "accuracy", "tp", "fp", "fn"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), abs=1e-9), key


def test_a_failing_cell_loses_nothing_else(tmp_path: Path, monkeypatch) -> None:
    import segshield.audits.craft as craft_mod
    import segshield.audits.plan as plan_mod

    real = craft_mod.get_attack

    def flaky(name, *args, **kwargs):
        if name == "bim":
            raise RuntimeError("simulated attack failure")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(craft_mod, "get_attack", flaky)
    monkeypatch.setattr(plan_mod, "get_attack", flaky)
    report = run_audit(AuditConfig(tmp_path, attacks=("fgsm", "bim", "pgd"), **FAST))
    status = {c.id: c.status for c in report.cells}
    assert [s for i, s in status.items() if i.startswith("bim")] == ["error", "error"]
    assert all(s == "ok" for i, s in status.items() if not i.startswith("bim"))
    assert "simulated attack failure" in report.cells[2].error
    AuditReport.from_dict(report.to_dict())  # still a valid report


def test_unavailable_engine_is_reported_not_faked(tmp_path: Path) -> None:
    cfg = AuditConfig(
        tmp_path,
        attacks=("fgsm",),
        **{**FAST, "engines": ("pytorch", "onnxruntime-cuda", "tensorrt-fp16")},
    )
    report = run_audit(cfg)
    cuda = next(e for e in report.engines if e.name == "ort-cuda")  # alias resolved
    trt = next(e for e in report.engines if e.name == "tensorrt-fp16")
    assert trt.status == "unavailable" and "tensorrt" in trt.reason.lower()
    assert cuda.status == "unavailable"
    assert "CUDAExecutionProvider" in cuda.reason
    assert report.clean["ort-cuda"].status == "unavailable"
    assert all(c.engines["pytorch"].status == "ok" for c in report.cells)


@pytest.fixture
def nan_factory(tmp_path: Path, monkeypatch) -> str:
    mod = tmp_path / "nanmodel_pkg.py"
    mod.write_text(
        textwrap.dedent(
            """
        import torch

        class NaNNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, 1, 1)

            def forward(self, x):
                return self.conv(x) * float("nan")

        def make():
            return NaNNet()
        """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "nanmodel_pkg:make"
    sys.modules.pop("nanmodel_pkg", None)


def test_model_returning_nan_is_a_clear_error(tmp_path: Path, nan_factory: str) -> None:
    with pytest.raises(ModelOutputError, match="NaN"):
        run_audit(AuditConfig(tmp_path / "o", model=ModelSpec(nan_factory), **FAST))


def test_bad_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        run_audit(AuditConfig(tmp_path / "o", data=tmp_path / "nothing", **FAST))


def test_config_validation_lists_problems(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"epsilons must be in \[0, 1\].*unknown engine"):
        AuditConfig(tmp_path, epsilons=(2.0,), engines=("pytorch", "tensorflow"))


def test_config_validation_names_each_bad_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        AuditConfig(tmp_path, batch_size=-1, steps=0, panels=-2)
    text = str(info.value)
    for part in ("batch_size must be >= 1, got -1", "steps must be >= 1, got 0",
                 "panels must be >= 0, got -2"):  # fmt: skip
        assert part in text


def test_perturbation_is_reproducible_with_the_seed(tmp_path: Path) -> None:
    cfg = {"attacks": ("pgd",), **FAST}
    r1 = run_audit(AuditConfig(tmp_path / "a", seed=3, **cfg))
    r2 = run_audit(AuditConfig(tmp_path / "b", seed=3, **cfg))
    l2 = [np.asarray(r.cells[0].perturbation.per_image["l2"]) for r in (r1, r2)]
    assert np.array_equal(l2[0], l2[1])


def test_artifact_paths_are_relative_to_the_report(cli_audit) -> None:
    for engine in cli_audit.report["engines"]:
        if engine["artifact"]:
            assert not Path(engine["artifact"]).is_absolute(), engine["artifact"]
            assert (cli_audit.out_dir / engine["artifact"]).is_file()


def test_comparisons_are_passed_in(tmp_path: Path) -> None:
    """The audit applies the comparison functions it is given, and only those."""
    from segshield.audits.compare import DEFAULT_COMPARISONS, Context

    seen: list[tuple[str, bool]] = []

    def record(ctx: Context) -> None:
        seen.append((ctx.name, ctx.clean is None))

    cfg = AuditConfig(tmp_path, attacks=("fgsm",), **{**FAST, "n_boot": 0})
    report = run_audit(cfg, comparisons=(record,))
    # clean run + 2 cells, one engine each; nothing else filled the comparison fields
    assert seen == [("pytorch", True), ("pytorch", False), ("pytorch", False)]
    assert all(c.engines["pytorch"].attack_success is None for c in report.cells)
    full = run_audit(cfg, comparisons=DEFAULT_COMPARISONS)
    assert all(c.engines["pytorch"].attack_success > 0 for c in full.cells)
    assert all(c.engines["pytorch"].flip_rate > 0 for c in full.cells)
