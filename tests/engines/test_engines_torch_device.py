"""TorchRunner on the module's device: batches follow the module (also after it moves), in
channels-last format when its conv weights are, and the logits come back as CPU float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segshield.devices import placed
from segshield.engines import TorchRunner
from segshield.engines.torch_runner import _channels_last

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _record_inputs(model: nn.Module) -> list[torch.Tensor]:
    """The inputs each forward of `model` receives, appended as they come."""
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    return seen


def test_default_keeps_the_module_where_it_is(unet, batch) -> None:
    runner = TorchRunner(unet)
    assert runner.device == torch.device("cpu")
    assert runner.providers == ["cpu"] and runner.describe()["providers"] == ["cpu"]
    seen = _record_inputs(unet)
    out = runner.infer(batch)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert seen[0].device.type == "cpu" and seen[0].is_contiguous()


def test_channels_last_module_gets_channels_last_batches(unet, batch) -> None:
    expected = TorchRunner(unet).infer(batch)
    seen = _record_inputs(unet)
    with placed(unet, torch.device("cpu"), channels_last=True):
        assert _channels_last(unet)
        got = TorchRunner(unet).infer(batch)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not seen[0].is_contiguous()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not _channels_last(unet)  # placed() put it back


def test_channels_last_detection_skips_ambiguous_weights() -> None:
    only_1x1 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1))
    assert not _channels_last(only_1x1.to(memory_format=torch.channels_last))
    mixed = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 3))
    assert _channels_last(mixed.to(memory_format=torch.channels_last))
    assert not _channels_last(nn.Linear(3, 2))


def test_explicit_cpu_device_moves_nothing_else(unet, batch) -> None:
    runner = TorchRunner(unet, "cpu")
    assert repr(runner) == "TorchRunner(name='pytorch', device='cpu')"
    assert runner.infer(batch).shape == (6, 2, 32, 32)


@needs_cuda
def test_cuda_module_runs_on_its_gpu(unet, batch) -> None:
    expected = TorchRunner(unet).infer(batch)
    seen = _record_inputs(unet)
    with placed(unet, torch.device("cuda", 0), channels_last=True):
        runner = TorchRunner(unet)
        assert runner.providers == ["cuda:0"]
        got = runner.infer(batch)
        assert seen[-1].device == torch.device("cuda", 0)
        assert seen[-1].is_contiguous(memory_format=torch.channels_last)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    # The runner follows the module back to the CPU.
    assert runner.providers == ["cpu"]
    np.testing.assert_array_equal(runner.infer(batch), expected)


@needs_cuda
def test_explicit_cuda_device_moves_the_module(unet, batch) -> None:
    runner = TorchRunner(unet, "cuda")
    assert runner.device == torch.device("cuda", torch.cuda.current_device())
    assert next(unet.parameters()).is_cuda
    assert runner.infer(batch).shape == (6, 2, 32, 32)
