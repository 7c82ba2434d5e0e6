"""TorchRunner: eval-mode reference engine, output checks, and the Runner contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from segshield.engines import Runner, TorchRunner
from segshield.errors import (
    EngineInputError,
    EngineUnavailableError,
    ModelLoadError,
    ModelOutputError,
)


def test_torch_runner_matches_eval_forward(unet, batch):
    unet.train()
    runner = TorchRunner(unet)
    assert not unet.training  # runner puts the model in eval mode
    with torch.no_grad():
        expected = unet(torch.from_numpy(batch)).numpy()
    got = runner.infer(batch)
    assert got.dtype == np.float32
    assert got.shape == (6, 2, 32, 32)
    np.testing.assert_array_equal(got, expected)


def test_torch_runner_contract_and_describe(unet):
    runner = TorchRunner(unet)
    assert isinstance(runner, Runner)
    assert (runner.name, runner.kind, runner.precision) == ("pytorch", "pytorch", "fp32")
    assert runner.providers == ["cpu"]
    info = runner.describe()
    assert json.loads(json.dumps(info)) == info
    assert info["providers"] == ["cpu"]
    assert info["artifact"] is None


def test_torch_runner_casts_float64(unet, batch):
    runner = TorchRunner(unet)
    np.testing.assert_array_equal(runner.infer(batch.astype(np.float64)), runner.infer(batch))


class _PartlyNaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        out[:, :, 0, 0] = float("nan")  # 2 classes x N images non-finite
        return out


def test_torch_runner_non_finite_output(batch):
    runner = TorchRunner(_PartlyNaN())
    with pytest.raises(ModelOutputError, match=r"engine 'pytorch' produced 12 non-finite"):
        runner.infer(batch)


class _DictOut(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": x}


class _Flat(nn.Module):
    """Neither classifier logits (N, K) nor a mask of the input's size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class _Classifier(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2]


def test_torch_runner_rejects_non_4d_or_non_tensor_output(batch):
    with pytest.raises(ModelOutputError, match="dict"):
        TorchRunner(_DictOut()).infer(batch)
    with pytest.raises(ModelOutputError, match=r"returned shape \(6, 3, 1024\)"):
        TorchRunner(_Flat()).infer(batch)
    # (N, K) logits are a classifier's: accepted (the task checks K against the labels)
    assert TorchRunner(_Classifier()).infer(batch).shape == (6, 2)


def test_torch_runner_input_errors(unet, batch):
    runner = TorchRunner(unet, in_channels=3)
    with pytest.raises(EngineInputError, match=r"expects \(N,3,H,W\), got \(6, 1, 32, 32\)"):
        runner.infer(batch[:, :1])
    with pytest.raises(EngineInputError, match="rank-4"):
        runner.infer(batch[0])
    with pytest.raises(EngineInputError, match="uint8"):
        runner.infer((batch * 255).astype(np.uint8))
    bad = batch.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(EngineInputError, match="1 non-finite"):
        runner.infer(bad)
    # Without in_channels the torch error is still reported as an input error with the shape.
    with pytest.raises(EngineInputError, match=r"\(6, 1, 32, 32\)"):
        TorchRunner(unet).infer(batch[:, :1])


def test_torch_runner_refuses_non_fp32_model(unet):
    with pytest.raises(ModelLoadError, match="float16"):
        TorchRunner(unet.half())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_torch_runner_cuda_unavailable(unet):
    with pytest.raises(EngineUnavailableError, match="CUDA is not available"):
        TorchRunner(unet, device="cuda")
