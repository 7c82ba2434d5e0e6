"""infer_batched: chunking keeps order and results; bad arguments are refused."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.engines import OrtRunner, TorchRunner, infer_batched
from segshield.errors import EngineInputError


class _Counting:
    """Wraps a runner and records the batch sizes it is given."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.sizes: list[int] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(batch.shape[0])
        return self.inner.infer(batch)


@pytest.mark.parametrize("batch_size", [1, 4, 6, 64])
def test_infer_batched_matches_single_pass(unet, batch, batch_size):
    runner = _Counting(TorchRunner(unet))
    full = runner.inner.infer(batch)
    out = infer_batched(runner, batch, batch_size)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, full, atol=1e-6, rtol=0)
    assert max(runner.sizes) <= batch_size
    assert sum(runner.sizes) == 6


def test_infer_batched_with_ort(unet_onnx, batch):
    runner = OrtRunner(unet_onnx.path)
    np.testing.assert_allclose(infer_batched(runner, batch, 4), runner.infer(batch), atol=1e-5)


def test_infer_batched_rejects_bad_arguments(unet, batch):
    runner = TorchRunner(unet)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            infer_batched(runner, batch, bad)
    with pytest.raises(EngineInputError, match="empty"):
        infer_batched(runner, batch[:0], 4)
    with pytest.raises(EngineInputError, match=r"\(N,C,H,W\)"):
        infer_batched(runner, batch[0], 4)
