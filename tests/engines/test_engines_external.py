"""Engines built outside segshield (`engines/external.py`): ONNX files written by plain
`torch.onnx.export` (dynamo and TorchScript), read and checked against the audited images,
run on real ONNX Runtime; clear one-line refusals for files that do not fit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from segshield.engines import ExpectedIO, engine_from_file, onnx_engine_from_file
from segshield.engines.external import (
    FixedBatchRunner,
    engine_file_name,
    graph_precision,
    trt_engine_from_file,
)
from segshield.errors import EngineUnavailableError, ModelLoadError
from segshield.exporters import onnx_fp16_from_onnx, onnx_int8_dynamic_from_onnx
from segshield.hashing import sha256_file
from segshield.lazy import tensorrt_unavailable_reason

RGB32 = ExpectedIO((3, 32, 32), 2)  # the TinyUNet's images and classes


def _export(model: nn.Module, example: torch.Tensor, path: Path, **kwargs: object) -> Path:
    """Plain torch.onnx.export, as a team outside segshield would run it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), verbose=False, **kwargs)
    return path


@pytest.fixture(scope="module")
def model(unet_factory) -> nn.Module:
    return unet_factory()


@pytest.fixture(scope="module")
def files(tmp_path_factory, model) -> dict[str, Path]:
    """The TinyUNet exported outside segshield: dynamo with its defaults (every dim fixed,
    batch 1), TorchScript with dynamic batch/height/width, TorchScript at 64x64, batch 2."""
    root = tmp_path_factory.mktemp("external")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    axes = {0: "n", 2: "h", 3: "w"}
    return {
        "dynamo": _export(model, x, root / "dynamo.onnx", dynamo=True, external_data=False),
        "ts": _export(model, x, root / "ts.onnx", dynamo=False, input_names=["img"],
                      output_names=["logits"], dynamic_axes={"img": axes, "logits": axes}),
        "fixed64": _export(model, torch.rand(1, 3, 64, 64), root / "fixed64.onnx", dynamo=False),
        "batch2": _export(model, x.repeat(2, 1, 1, 1), root / "batch2.onnx", dynamo=False),
    }  # fmt: skip


def _torch(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def _images(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(n).random((n, 3, h, w), dtype=np.float32)


# ----------------------------------------------------------------------------- loading


def test_dynamo_export_is_read_and_run_image_by_image(files, model):
    runner, record = onnx_engine_from_file(files["dynamo"], RGB32)
    # torch.onnx.export's dynamo defaults fix the batch at the example's 1: batches of one.
    assert isinstance(runner, FixedBatchRunner) and runner.batch == 1
    images = _images(3)
    np.testing.assert_allclose(runner.infer(images), _torch(model, images), atol=1e-4, rtol=0)
    assert (record.name, record.kind, record.precision) == ("file:dynamo", "onnxruntime", "fp32")
    assert record.providers == ["CPUExecutionProvider"] and record.device == "cpu"
    assert record.sha256 == sha256_file(files["dynamo"]) and record.artifact == str(files["dynamo"])
    details = record.details
    assert details["external"] is True
    assert (details["input_shape"], details["fixed_batch"], details["dynamic_hw"]) == (
        [1, 3, 32, 32], 1, False,
    )  # fmt: skip
    assert details["output_shape"] == [1, 2, 32, 32]
    assert details["producer"].startswith("pytorch") and details["opset"] >= 18
    assert "batches of that size" in record.notes[1]
    assert record.to_dict()["status"] == "ok"


def test_torchscript_export_with_dynamic_axes_runs_at_the_data_size(files, model):
    expected = ExpectedIO((3, 48, 64), 2)  # a size the file never saw
    runner, record = onnx_engine_from_file(files["ts"], expected)
    assert not isinstance(runner, FixedBatchRunner)
    assert record.details["input_name"] == "img" and record.details["input_shape"] == [
        "n", 3, "h", "w",
    ]  # fmt: skip
    assert (record.details["fixed_batch"], record.details["dynamic_hw"]) == (None, True)
    images = _images(5, 48, 64)
    np.testing.assert_allclose(runner.infer(images), _torch(model, images), atol=1e-4, rtol=0)


def test_a_fixed_batch_of_two_pads_the_last_chunk(files, model):
    runner, record = engine_from_file(files["batch2"], RGB32, name="team-engine")
    assert isinstance(runner, FixedBatchRunner) and runner.batch == 2
    assert record.name == runner.name == "team-engine"
    images = _images(5)
    got = runner.infer(images)
    assert got.shape == (5, 2, 32, 32)
    np.testing.assert_allclose(got, _torch(model, images), atol=1e-4, rtol=0)
    assert runner.describe()["fixed_batch"] == 2


def test_external_data_beside_the_file_is_read_and_hashed(files, model, tmp_path):
    proto = onnx.load(str(files["ts"]))
    path = tmp_path / "split.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="split.onnx.data", size_threshold=0)  # fmt: skip
    data = tmp_path / "split.onnx.data"
    assert data.is_file() and data.stat().st_size > path.stat().st_size
    runner, record = onnx_engine_from_file(path, RGB32)
    images = _images(2)
    np.testing.assert_allclose(runner.infer(images), _torch(model, images), atol=1e-4, rtol=0)
    roles = [(a.role, Path(a.path).name, a.sha256) for a in record.artifacts]
    assert roles == [
        ("onnx", "split.onnx", sha256_file(path)),
        ("onnx-data", "split.onnx.data", sha256_file(data)),
    ]
    data.rename(tmp_path / "elsewhere.data")
    with pytest.raises(ModelLoadError, match=r"external data \['split.onnx.data'\], not found"):
        onnx_engine_from_file(path, RGB32)


def test_precision_is_read_from_the_graph(files, tmp_path):
    fp32 = onnx.load(str(files["ts"]))
    assert graph_precision(fp32) == "fp32"
    fp16 = onnx_fp16_from_onnx(files["ts"], tmp_path / "h.onnx").path
    int8 = onnx_int8_dynamic_from_onnx(files["ts"], tmp_path / "q.onnx").path
    assert graph_precision(onnx.load(str(fp16))) == "fp16"
    assert graph_precision(onnx.load(str(int8))) == "int8"
    _, record = onnx_engine_from_file(fp16, RGB32)
    assert record.precision == "fp16"


def test_engine_file_names_are_unique():
    assert engine_file_name("a/model.onnx") == "file:model"
    assert engine_file_name("b/model.plan", ["pytorch", "file:model"]) == "file:model-2"
    assert engine_file_name("c/model.onnx", ["file:model", "file:model-2"]) == "file:model-3"


# ----------------------------------------------------------------------------- refusals


def test_wrong_channel_count_names_both(files):
    with pytest.raises(ModelLoadError) as info:
        onnx_engine_from_file(files["ts"], ExpectedIO((1, 32, 32), 2))
    message = str(info.value)
    assert "takes 3-channel images" in message and "audited images have 1 channel" in message
    assert "\n" not in message


def test_fixed_size_other_than_the_data_names_both_and_the_fix(files):
    with pytest.raises(ModelLoadError) as info:
        onnx_engine_from_file(files["fixed64"], ExpectedIO((3, 128, 128), 2))
    message = str(info.value)
    assert "takes 64x64 images" in message and "audited images are 128x128" in message
    assert "--size 64" in message and "dynamic height/width" in message


def test_output_classes_other_than_the_task_are_refused(files):
    with pytest.raises(ModelLoadError, match=r"has shape \[1, 2, 32, 32\]; .*logits \(N,1,32,32\)"):
        onnx_engine_from_file(files["dynamo"], ExpectedIO((3, 32, 32), 1))


class _TwoInputs(nn.Module):
    def forward(self, image: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        return image[:, :1] * prior


def test_two_inputs_are_refused_by_name(tmp_path):
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TwoInputs(), (torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)),
                          str(path), dynamo=False, input_names=["image", "prior"])  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"has 2 inputs \('image' .*'prior' .*exactly one"):
        onnx_engine_from_file(path, ExpectedIO((3, 8, 8), 1))


def test_integer_input_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["n", 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 8, 8])
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=1)], "g", [x], [y])
    path = tmp_path / "int.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ModelLoadError, match="element type int64; segshield feeds float32"):
        onnx_engine_from_file(path, ExpectedIO((1, 8, 8), 1))


def test_random_bytes_and_missing_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match=r"junk.onnx is not .*ONNX model") as info:
        onnx_engine_from_file(junk, RGB32)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match=r"engine file not found: .*missing.onnx"):
        engine_from_file(tmp_path / "missing.onnx", RGB32)
    with pytest.raises(ModelLoadError, match="not an engine file"):
        engine_from_file(tmp_path / "model.pt", RGB32)


@pytest.mark.skipif(
    tensorrt_unavailable_reason() is None, reason="TensorRT is usable here: no refusal to see"
)
def test_a_plan_without_tensorrt_is_unavailable_with_the_reason(tmp_path):
    plan = tmp_path / "team.plan"
    plan.write_bytes(b"not checked: TensorRT is missing")
    with pytest.raises(EngineUnavailableError, match=r"TensorRT is not usable here; cannot audit "
                       r"team.plan: .*tensorrt"):  # fmt: skip
        trt_engine_from_file(plan, RGB32)
