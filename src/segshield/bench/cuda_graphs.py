"""CUDA-graph replay of the PyTorch model, for latency only (thin; CUDA only).

A CUDA graph records one forward pass on a static input buffer and replays it with a single
launch, removing per-kernel launch overhead — the upper bound of what eager PyTorch can reach
at small batch sizes. Graphs are static: one runner serves exactly one batch shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.engines.base import as_float32_batch, check_logits, runner_identity
from segshield.errors import EngineInputError, EngineUnavailableError


def cuda_graphs_unavailable_reason() -> str | None:
    """Why CUDA graphs cannot be used here, or None."""
    if torch.cuda.is_available():
        return None
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    return (
        f"CUDA graphs need a CUDA device; CUDA is not available to PyTorch "
        f"(torch {torch.__version__}, {build})"
    )


class CudaGraphTorchRunner:
    """Replay a captured forward pass of `model` for batches of exactly `batch_shape`.

    Args:
        model: FP32 model, (N,C,H,W) -> (N,K,H,W); moved to `device` and put in eval mode.
        batch_shape: the static (N,C,H,W) every `infer` batch must have.
        device: CUDA device.
        warmup: eager passes on a side stream before capture (cuDNN autotuning, allocator).

    Raises:
        EngineUnavailableError: CUDA is not available.
    """

    kind = "pytorch"
    precision = "fp32"

    def __init__(
        self,
        model: nn.Module,
        batch_shape: tuple[int, int, int, int],
        *,
        device: str = "cuda",
        warmup: int = 3,
        name: str = "pytorch-cudagraph",
    ) -> None:
        reason = cuda_graphs_unavailable_reason()
        if reason:
            raise EngineUnavailableError(reason)
        dev = torch.device(device)
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.model = model.to(dev).eval()
        self.device = dev
        self.batch_shape = tuple(int(d) for d in batch_shape)
        self.name = name
        self.providers: list[str] = [str(dev), "cuda-graph"]
        self._input = torch.zeros(self.batch_shape, dtype=torch.float32, device=dev)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(max(warmup, 1)):
                self.model(self._input)
        torch.cuda.current_stream(dev).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self._graph):
            self._output = self.model(self._input)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 images of exactly `batch_shape` -> float32 (N,K,H,W) logits."""
        images = as_float32_batch(batch, self.name)
        if tuple(images.shape) != self.batch_shape:
            raise EngineInputError(
                f"engine '{self.name}' replays a CUDA graph captured for {self.batch_shape}; "
                f"got {images.shape}"
            )
        self._input.copy_(torch.from_numpy(images))
        self._graph.replay()
        return check_logits(self._output.float().cpu().numpy(), self.name, images.shape)

    def describe(self) -> dict[str, Any]:
        return {
            **runner_identity(self),
            "batch_shape": list(self.batch_shape),
            "artifact": None,
        }


__all__ = ["CudaGraphTorchRunner", "cuda_graphs_unavailable_reason"]
