"""onnx_from_torch: single-file export, dynamic batch, real ONNX Runtime parity, failure modes."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from segshield.errors import ExportError, ModelOutputError
from segshield.exporters import OnnxExport, onnx_from_torch, sha256_bytes, sha256_file
from segshield.exporters import onnx as onnx_exporter


def _ort_logits(path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images})[0]


def test_export_single_file_dynamic_batch_and_parity(unet, images, tmp_path):
    out_dir = tmp_path / "artifacts"
    path = out_dir / "model.onnx"
    result = onnx_from_torch(unet, images, path)

    assert isinstance(result, OnnxExport)
    assert result.path == path
    assert result.exporter == "dynamo"
    assert result.opset == 18
    assert (result.input_name, result.output_name) == ("images", "logits")
    assert result.parity_batch == 4
    assert result.tolerance == pytest.approx(1e-4 + 1e-5 * result.logit_scale)
    assert 0.0 <= result.max_abs_diff < 1e-4
    assert result.seconds > 0
    # One self-contained file: no model.onnx.data, no temp folders left behind.
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.onnx"]

    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    ops = {node.op_type for node in proto.graph.node}
    assert {"Conv", "MaxPool", "ConvTranspose", "Concat"} <= ops

    # The batch axis really is dynamic: batch sizes never seen at export time run and agree.
    gen = torch.Generator().manual_seed(7)
    for n in (1, 5):
        batch = torch.rand(n, 3, 32, 32, generator=gen)
        with torch.no_grad():
            expected = unet(batch).numpy()
        got = _ort_logits(path, batch.numpy())
        assert got.shape == (n, 2, 32, 32)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_export_sha256_matches_file(unet, images, tmp_path):
    path = tmp_path / "m.onnx"
    result = onnx_from_torch(unet, images, path)
    assert result.sha256 == sha256_file(path)
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["path"] == str(path)
    assert data["exporter"] == "dynamo"


def test_sha256_helpers(tmp_path):
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_bytes(b"") == empty
    path = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 5000  # > 1 MiB: exercises chunked reading
    path.write_bytes(payload)
    assert sha256_file(path) == hashlib.sha256(payload).hexdigest() == sha256_bytes(payload)
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing.bin")


def test_export_restores_training_flags(unet, images, tmp_path):
    unet.train()
    unet.enc2.eval()  # mixed modes must survive, not be flattened by model.train(flag)
    before = {name: m.training for name, m in unet.named_modules()}
    onnx_from_torch(unet, images, tmp_path / "m.onnx")
    assert {name: m.training for name, m in unet.named_modules()} == before


def test_export_single_image_sample_is_still_dynamic(unet, images, tmp_path):
    path = tmp_path / "one.onnx"
    result = onnx_from_torch(unet, images[:1], path)
    assert result.parity_batch == 1
    assert result.max_abs_diff < 1e-4
    assert (
        _ort_logits(path, np.random.default_rng(0).random((3, 3, 32, 32), np.float32)).shape[0] == 3
    )


def test_export_torchscript_exporter(unet, images, tmp_path):
    path = tmp_path / "ts.onnx"
    result = onnx_from_torch(unet, images, path, dynamo=False, opset=17)
    assert result.exporter == "torchscript"
    assert result.opset == 17
    assert result.max_abs_diff < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.onnx"]
    assert _ort_logits(path, images[:3].numpy()).shape == (3, 2, 32, 32)


def test_export_falls_back_to_torchscript(unet, images, tmp_path, monkeypatch, caplog):
    def broken_dynamo(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(onnx_exporter, "_export_dynamo", broken_dynamo)
    with caplog.at_level(logging.WARNING, logger="segshield.exporters.onnx"):
        result = onnx_from_torch(unet, images, tmp_path / "m.onnx")
    assert result.exporter == "torchscript"
    assert result.max_abs_diff < 1e-4
    assert "falling back" in caplog.text
    assert "aten::frobnicate" in caplog.text


class _DriftingModel(nn.Module):
    """Adds a Python-side call counter: the exported graph freezes it, eager keeps counting."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x) + float(self.calls)


def test_export_parity_failure_names_values_and_leaves_no_file(images, tmp_path):
    path = tmp_path / "drift.onnx"
    with pytest.raises(ExportError, match=r"exceeds tolerance .* = atol 0\.0001 \+ rtol") as info:
        onnx_from_torch(_DriftingModel(), images, path)
    assert "max |onnxruntime - pytorch|" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_export_failure_of_both_exporters_is_export_error(unet, images, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(onnx_exporter, "_export_dynamo", broken)
    monkeypatch.setattr(onnx_exporter, "_export_torchscript", broken)
    with pytest.raises(ExportError, match="dynamo and TorchScript") as info:
        onnx_from_torch(unet, images, tmp_path / "m.onnx")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("sample", "match"),
    [
        (torch.rand(3, 32, 32), r"\(N,C,H,W\)"),
        (torch.rand(2, 3, 32, 32, dtype=torch.float64), "float64"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (np.zeros((1, 3, 32, 32), np.float32), "torch.Tensor"),
    ],
)
def test_export_rejects_bad_samples(unet, tmp_path, sample, match):
    with pytest.raises(ExportError, match=match):
        onnx_from_torch(unet, sample, tmp_path / "m.onnx")


class _TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, y


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * float("nan")


def test_export_rejects_tuple_output(images, tmp_path):
    with pytest.raises(ExportError, match="one logits tensor"):
        onnx_from_torch(_TupleModel(), images, tmp_path / "m.onnx")


def test_export_rejects_non_finite_model(images, tmp_path):
    with pytest.raises(ModelOutputError, match="non-finite"):
        onnx_from_torch(_NaNModel(), images, tmp_path / "m.onnx")


class _Scaled(nn.Module):
    """A model whose logits span about ±1000 (large-logit models trained with a high-scale head)."""

    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale - 0.5 * self.scale


def test_export_tolerance_scales_with_the_logits(unet, images, tmp_path):
    # The old absolute bound (1e-4) rejected correct exports of large-logit models.
    model = _Scaled(unet, 1e5)
    result = onnx_from_torch(model, images, tmp_path / "big.onnx")
    assert result.logit_scale > 1e3
    assert result.tolerance == pytest.approx(1e-4 + 1e-5 * result.logit_scale)
    assert result.max_abs_diff <= result.tolerance
    with pytest.raises(ExportError, match="logit scale"):
        onnx_from_torch(model, images, tmp_path / "strict.onnx", atol=0.0, rtol=0.0)


# ------------------------------------------------------------------- dynamic height/width


def _hw_dims(path) -> list[int | str]:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


@pytest.mark.parametrize("dynamo", [True, False])
def test_export_has_dynamic_height_and_width(unet, images, tmp_path, dynamo):
    """Height/width are symbolic, checked at the export size and twice it, and the file runs
    (and agrees with PyTorch) at a size it never saw: 48x80 (the U-Net needs even sizes)."""
    path = tmp_path / "dyn.onnx"
    result = onnx_from_torch(unet, images, path, dynamo=dynamo)
    assert result.exporter == ("dynamo" if dynamo else "torchscript")
    assert result.dynamic_hw is True
    assert result.checked_hw == ((32, 32), (64, 64))
    assert result.notes == ()
    assert result.to_dict()["checked_hw"] == [[32, 32], [64, 64]]
    dims = _hw_dims(path)
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    batch = torch.rand(2, 3, 48, 80, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = unet(batch).numpy()
    got = _ort_logits(path, batch.numpy())
    assert got.shape == (2, 2, 48, 80)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


class _FixedSize(nn.Module):
    """A head with a Linear over the flattened 32x32 map: it takes exactly one image size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.mix = nn.Linear(32 * 32, 32 * 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.mix(y.flatten(1)).view(-1, 1, 32, 32)


def test_a_fixed_size_model_is_exported_with_fixed_hw_and_a_note(images, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "fixed.onnx"
    result = onnx_from_torch(_FixedSize().eval(), images, path)
    assert result.dynamic_hw is False
    assert result.checked_hw == ((32, 32),)
    assert (
        len(result.notes) == 1
        and "fixed height/width: the model fails at (64, 64)" in (result.notes[0])
    )
    dims = _hw_dims(path)
    assert isinstance(dims[0], str) and dims[1:] == [3, 32, 32]
    assert _ort_logits(path, images.numpy()).shape == (4, 1, 32, 32)


def test_a_failed_dynamic_export_falls_back_to_fixed_hw(unet, images, tmp_path, monkeypatch):
    real = onnx_exporter._export_dynamo

    def no_dynamic_hw(*args, dynamic_hw=False, **kwargs):
        if dynamic_hw:
            raise RuntimeError("Constraints violated (height)")
        return real(*args, dynamic_hw=dynamic_hw, **kwargs)

    monkeypatch.setattr(onnx_exporter, "_export_dynamo", no_dynamic_hw)
    result = onnx_from_torch(unet, images, tmp_path / "m.onnx")
    # Still the dynamo exporter (the fixed export is retried with it first), fixed H/W, why.
    assert (result.exporter, result.dynamic_hw) == ("dynamo", False)
    assert "export with dynamic height/width failed" in result.notes[0]
    assert "Constraints violated (height)" in result.notes[0]
    assert _hw_dims(tmp_path / "m.onnx")[1:] == [3, 32, 32]


def test_dynamic_hw_can_be_switched_off(unet, images, tmp_path):
    result = onnx_from_torch(unet, images, tmp_path / "m.onnx", dynamic_hw=False)
    assert (result.dynamic_hw, result.checked_hw, result.notes) == (False, ((32, 32),), ())
    assert _hw_dims(tmp_path / "m.onnx")[1:] == [3, 32, 32]
