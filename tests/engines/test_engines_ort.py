"""OrtRunner against real ONNX Runtime (CPU): parity, input checks, provider honesty, errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from segshield.engines import OrtRunner, Runner, TorchRunner, available_ort_providers
from segshield.errors import (
    EngineInputError,
    EngineUnavailableError,
    ModelLoadError,
    ModelOutputError,
)
from segshield.hashing import sha256_file


def _save_graph(path: Path, nodes, inputs, outputs) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9  # readable by any onnxruntime >= 1.16
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_ort_matches_torch_on_same_batch(unet, unet_onnx, batch):
    torch_out = TorchRunner(unet).infer(batch)
    ort_out = OrtRunner(unet_onnx.path).infer(batch)
    assert ort_out.dtype == np.float32
    assert ort_out.shape == torch_out.shape == (6, 2, 32, 32)
    assert float(np.abs(ort_out - torch_out).max()) < 1e-4


def test_ort_runner_contract_and_describe(unet_onnx):
    runner = OrtRunner(unet_onnx.path)
    assert isinstance(runner, Runner)
    assert (runner.name, runner.kind, runner.precision) == (
        "onnxruntime-cpu",
        "onnxruntime",
        "fp32",
    )
    assert runner.providers == ["CPUExecutionProvider"]
    info = runner.describe()
    assert json.loads(json.dumps(info)) == info
    assert info["artifact"] == {"path": str(unet_onnx.path), "sha256": unet_onnx.sha256}
    assert info["artifact"]["sha256"] == sha256_file(unet_onnx.path)
    assert info["input_shape"] == ["batch", 3, 32, 32]
    assert info["output_name"] == "logits"
    assert OrtRunner(unet_onnx.path, name="edge-box").name == "edge-box"


def test_ort_dynamic_batch_sizes(unet_onnx, batch):
    runner = OrtRunner(unet_onnx.path)
    full = runner.infer(batch)
    for n in (1, 5):
        np.testing.assert_allclose(runner.infer(batch[:n]), full[:n], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(runner.infer(batch.astype(np.float64)), full)


def test_ort_rejects_wrong_channels_and_size(unet_onnx, batch):
    runner = OrtRunner(unet_onnx.path)
    with pytest.raises(EngineInputError) as info:
        runner.infer(batch[:, :1])
    assert "('batch', 3, 32, 32)" in str(info.value)
    assert "(6, 1, 32, 32)" in str(info.value)
    padded = np.zeros((2, 3, 64, 48), np.float32)
    with pytest.raises(
        EngineInputError,
        match=r"expects input shape \('batch', 3, 32, 32\), "
        r"got \(2, 3, 64, 48\)",
    ):
        runner.infer(padded)
    with pytest.raises(EngineInputError, match="rank-4"):
        runner.infer(batch[0])
    with pytest.raises(EngineInputError, match="int64"):
        runner.infer(np.zeros((1, 3, 32, 32), np.int64))


def test_ort_static_batch_model(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 4, 4])
    path = _save_graph(tmp_path / "static.onnx", [helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    runner = OrtRunner(path)
    assert runner.infer(np.ones((2, 1, 4, 4), np.float32)).shape == (2, 1, 4, 4)
    with pytest.raises(EngineInputError, match=r"axis N: 3 != 2"):
        runner.infer(np.ones((3, 1, 4, 4), np.float32))


def test_ort_two_inputs_is_clear_error(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 1, 4, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 4, 4])
    path = _save_graph(
        tmp_path / "two.onnx", [helper.make_node("Add", ["a", "b"], ["y"])], [a, b], [y]
    )
    with pytest.raises(ModelLoadError, match=r"has 2 inputs \(a.*b.*\).*exactly one"):
        OrtRunner(path)


def test_ort_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00\xffnot a protobuf\x13\x37" * 64)
    with pytest.raises(ModelLoadError, match=r"corrupt\.onnx") as info:
        OrtRunner(corrupt)
    assert info.value.__cause__ is not None
    with pytest.raises(ModelLoadError, match=r"not found: .*missing\.onnx"):
        OrtRunner(tmp_path / "missing.onnx")


def test_ort_non_finite_output(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 4, 4])
    path = _save_graph(tmp_path / "log.onnx", [helper.make_node("Log", ["x"], ["y"])], [x], [y])
    runner = OrtRunner(path)
    images = np.full((2, 1, 4, 4), 0.5, np.float32)
    images[1, 0, :2, :] = 0.0  # log(0) = -inf in 8 places
    with pytest.raises(ModelOutputError, match=r"engine 'onnxruntime-cpu' produced 8 non-finite"):
        runner.infer(images)


def test_ort_fp16_model_runs_and_returns_float32(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 1, 4, 4])
    path = _save_graph(tmp_path / "h.onnx", [helper.make_node("Identity", ["x"], ["y"])], [x], [y])
    runner = OrtRunner(path)
    assert runner.precision == "fp16"
    out = runner.infer(np.full((1, 1, 4, 4), 0.25, np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, 0.25)


def test_ort_cuda_unavailable_on_this_machine(unet_onnx):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA; the test needs a CPU-only build")
    with pytest.raises(EngineUnavailableError, match="CUDAExecutionProvider") as info:
        OrtRunner(unet_onnx.path, providers=["CUDAExecutionProvider"])
    assert "CPUExecutionProvider" in str(info.value)  # names the available ones


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")  # ORT's own fallback notice
def test_ort_silent_cpu_fallback_is_refused(unet_onnx, monkeypatch, caplog):
    # Pretend the build lists CUDA (as onnxruntime-gpu does even when CUDA libs are missing);
    # the real session then falls back to CPU, which the runner must notice.
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA; the fallback cannot be provoked")
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(
        EngineUnavailableError,
        match=r"requested CUDAExecutionProvider but the session runs on \['CPUExecutionProvider'\]",
    ):
        OrtRunner(unet_onnx.path, providers=providers)
    with caplog.at_level(logging.WARNING, logger="segshield.engines.ort_runner"):
        runner = OrtRunner(unet_onnx.path, providers=providers, require=False)
    assert runner.providers == ["CPUExecutionProvider"]
    assert runner.name == "onnxruntime-cpu"
    assert "session runs on" in caplog.text


def test_ort_require_false_drops_unavailable_provider(unet_onnx, batch):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    runner = OrtRunner(
        unet_onnx.path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], require=False
    )
    assert runner.providers == ["CPUExecutionProvider"]
    assert runner.describe()["requested_providers"] == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert runner.infer(batch[:1]).shape == (1, 2, 32, 32)


def test_ort_missing_onnxruntime(unet_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(EngineUnavailableError, match="onnxruntime is not installed; pip install"):
        OrtRunner(unet_onnx.path)
    assert available_ort_providers() == []


def test_available_providers_lists_cpu():
    assert "CPUExecutionProvider" in available_ort_providers()


def test_import_does_not_load_onnxruntime():
    code = "import segshield, segshield.engines, sys; assert 'onnxruntime' not in sys.modules"
    src = str(Path(__file__).resolve().parents[2] / "src")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": src, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
