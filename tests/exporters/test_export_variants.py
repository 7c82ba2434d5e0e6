"""FP16 / INT8 ONNX variants of the bundled U-Net, calibrated on real nuclei images; AOTInductor
and TensorRT exporters' unavailable paths on this CPU-only machine (nothing mocked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from segshield.errors import DataError, EngineUnavailableError
from segshield.exporters import (
    ImageCalibrationReader,
    aoti_from_torch,
    onnx_fp16_from_onnx,
    onnx_from_torch,
    onnx_int8_dynamic_from_onnx,
    onnx_int8_from_onnx,
    tensorrt_engine_from_onnx,
)
from segshield.exporters.aoti import aoti_unavailable_reason
from segshield.exporters.calibration import check_calibration_images, images_digest
from segshield.exporters.onnx_fp16 import _float16_with_onnx
from segshield.exporters.onnx_graph import ort_compute_precision


@pytest.fixture(scope="module")
def nuclei():
    from segshield.data import bundled_dataset

    return bundled_dataset("nuclei", "train").images, bundled_dataset("nuclei", "test").images


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory, nuclei) -> Path:
    from segshield.models import bundled_model

    train, _ = nuclei
    path = tmp_path_factory.mktemp("variants") / "model.onnx"
    return onnx_from_torch(bundled_model().module, torch.from_numpy(train[:2]), path).path


def _run(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def _input_scale(path: Path) -> float:
    """Scale of the QuantizeLinear that quantizes the graph input."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and
                n.input[0] == model.graph.input[0].name)  # fmt: skip
    return float(inits[node.input[1]])


# ----------------------------------------------------------------------- calibration reader


def test_reader_yields_exactly_the_given_images(nuclei):
    train, _ = nuclei
    reader = ImageCalibrationReader(train, "images", batch_size=5)
    feeds = []
    while (feed := reader.get_next()) is not None:
        assert list(feed) == ["images"] and feed["images"].dtype == np.float32
        feeds.append(feed["images"])
    assert [len(f) for f in feeds] == [5, 5, 2] and len(reader) == 3
    np.testing.assert_array_equal(np.concatenate(feeds), train)
    assert (reader.batches_served, reader.images_served) == (3, 12)
    assert reader.get_next() is None
    again = np.concatenate([f["images"] for f in reader])  # __iter__ rewinds
    np.testing.assert_array_equal(again, train)
    from onnxruntime.quantization import CalibrationDataReader

    assert isinstance(reader, CalibrationDataReader)  # ORT accepts it by duck typing


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 1, 8, 8), np.uint8), "float images"),
        (np.full((2, 1, 8, 8), 255.0, np.float32), r"\[0,1\]"),
        (np.full((2, 1, 8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((1, 8, 8), np.float32), r"\(N,C,H,W\)"),
        (np.zeros((0, 1, 8, 8), np.float32), "non-empty"),
    ],
)
def test_bad_calibration_images_are_refused(images, match):
    with pytest.raises(DataError, match=match):
        check_calibration_images(images)


def test_calibration_images_must_match_the_model(nuclei, tmp_path):
    from segshield.models import bundled_model

    # A graph with fixed height/width (the default export's are dynamic: any size fits it).
    train, _ = nuclei
    fixed = onnx_from_torch(
        bundled_model().module, torch.from_numpy(train[:2]), tmp_path / "fixed.onnx",
        dynamic_hw=False,
    ).path  # fmt: skip
    wrong = np.zeros((2, 1, 64, 64), np.float32)
    with pytest.raises(DataError, match="model expects"):
        onnx_int8_from_onnx(fixed, tmp_path / "q.onnx", wrong)
    assert not (tmp_path / "q.onnx").exists()


def test_fp16_and_int8_variants_keep_dynamic_height_and_width(fp32_onnx, nuclei, tmp_path):
    """The FP32 export's height/width are symbolic; its FP16 and INT8 variants run at the
    export size and at twice it, and agree with the FP32 graph there."""
    train, test = nuclei
    dims = onnx.load(str(fp32_onnx)).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    big = np.kron(test[:2], np.ones((1, 1, 2, 2), np.float32))  # (2,1,256,256), real content
    ref = _run(fp32_onnx, big)
    assert ref.shape == (2, 1, 256, 256)
    fp16 = onnx_fp16_from_onnx(fp32_onnx, tmp_path / "h.onnx")
    int8 = onnx_int8_from_onnx(fp32_onnx, tmp_path / "q.onnx", train)
    for variant, max_flips in ((fp16, 1e-3), (int8, 1e-2)):
        assert _run(variant.path, test).shape == (4, 1, 128, 128)
        out = _run(variant.path, big)
        assert out.shape == (2, 1, 256, 256)
        assert np.mean((out > 0) != (ref > 0)) < max_flips


# -------------------------------------------------------------------------------- INT8


@pytest.mark.slow
def test_static_int8_is_calibrated_on_the_given_images(fp32_onnx, nuclei, tmp_path):
    train, test = nuclei
    q = onnx_int8_from_onnx(fp32_onnx, tmp_path / "q.onnx", train)
    calib = q.details["calibration"]
    assert calib["sha256"] == images_digest(train)
    assert calib["n_images"] == calib["images_served"] == 12
    assert (calib["batches"], calib["batch_size"], calib["method"]) == (2, 6, "minmax")
    # The images really drive the ranges: the input scale is max(train)/255 (asymmetric int8)
    # and halves when the calibration images are halved.
    scale = _input_scale(q.path)
    assert scale == pytest.approx(float(train.max() - min(train.min(), 0.0)) / 255, rel=1e-4)
    half = onnx_int8_from_onnx(fp32_onnx, tmp_path / "half.onnx", train * 0.5)
    assert _input_scale(half.path) == pytest.approx(scale / 2, rel=1e-4)
    assert half.sha256 != q.sha256
    ops = q.details["ops"]
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert q.details["quantized_ops"]["Conv"] == 15
    out = _run(q.path, test)
    ref = _run(fp32_onnx, test)
    assert np.mean((out > 0) != (ref > 0)) < 0.01


@pytest.mark.slow
def test_calibration_methods_are_selectable(fp32_onnx, nuclei, tmp_path):
    train, _ = nuclei
    minmax = _input_scale(onnx_int8_from_onnx(fp32_onnx, tmp_path / "m.onnx", train).path)
    pct = onnx_int8_from_onnx(fp32_onnx, tmp_path / "p.onnx", train, method="percentile")
    assert pct.details["calibration"]["method"] == "percentile"
    assert _input_scale(pct.path) != pytest.approx(minmax, rel=1e-6)
    ent = onnx_int8_from_onnx(fp32_onnx, tmp_path / "e.onnx", train, method="entropy")
    assert any("entropy calibrator with 128 histogram bins" in n for n in ent.notes)
    with pytest.raises(ValueError, match="calibration method"):
        onnx_int8_from_onnx(fp32_onnx, tmp_path / "x.onnx", train, method="kl")  # type: ignore[arg-type]


def test_dynamic_int8_reports_integer_and_float_ops(fp32_onnx, nuclei, tmp_path):
    _, test = nuclei
    q = onnx_int8_dynamic_from_onnx(fp32_onnx, tmp_path / "d.onnx")
    assert q.details["integer_ops"] == {"ConvInteger": 15}
    assert q.details["float_ops"]["ConvTranspose"] == 3
    assert "15 ConvInteger (replacing 15 Conv)" in q.notes[1]
    out = _run(q.path, test)
    assert out.shape == (4, 1, 128, 128) and np.isfinite(out).all()


# -------------------------------------------------------------------------------- FP16


def test_fp16_keeps_float32_io(fp32_onnx, nuclei, tmp_path):
    _, test = nuclei
    v = onnx_fp16_from_onnx(fp32_onnx, tmp_path / "h.onnx")
    model = onnx.load(str(v.path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert v.details["fp16_initializers"] == v.details["initializers"] > 0
    out, ref = _run(v.path, test), _run(fp32_onnx, test)
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() < 0.1
    counts = ort_compute_precision(v.path)
    assert counts["fp32"] > 0  # ORT's CPU provider runs (most) FP16 nodes in FP32


def test_plain_onnx_fp16_fallback_converter(fp32_onnx, nuclei, tmp_path):
    _, test = nuclei
    converted = _float16_with_onnx(onnx.load(str(fp32_onnx)))
    onnx.checker.check_model(converted)
    path = tmp_path / "fallback.onnx"
    onnx.save(converted, str(path))
    f16 = [t for t in converted.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(f16) == len(converted.graph.initializer)
    out, ref = _run(path, test), _run(fp32_onnx, test)
    assert out.dtype == np.float32 and np.abs(out - ref).max() < 0.1


# ------------------------------------------------------------- GPU exporters on this CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_aoti_cuda_and_cpu_half_are_unavailable(unet, images, tmp_path):
    assert "CUDA is not available to PyTorch" in aoti_unavailable_reason("cuda", "fp16")
    assert "CUDA only" in aoti_unavailable_reason("cpu", "bf16")
    with pytest.raises(EngineUnavailableError, match="CUDA is not available"):
        aoti_from_torch(unet, images, tmp_path / "m.pt2", device="cuda", precision="fp16")
    assert not (tmp_path / "m.pt2").exists()


def test_aoti_without_a_compiler_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++/c++/clang++
    monkeypatch.delenv("CXX", raising=False)
    assert "needs a C++ compiler" in aoti_unavailable_reason("cpu", "fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_tensorrt_is_unavailable_with_reason(fp32_onnx, tmp_path):
    from segshield.engines import TensorRTRunner

    with pytest.raises(EngineUnavailableError, match="tensorrt Python package is not installed"):
        tensorrt_engine_from_onnx(fp32_onnx, tmp_path / "m.plan", precision="fp16")
    with pytest.raises(EngineUnavailableError, match="CUDA is not available to PyTorch"):
        TensorRTRunner(tmp_path / "m.plan")
    assert not (tmp_path / "m.plan").exists()
