"""PyTorch reference runner: the model as trained, in eval mode, no autograd."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.engines.base import as_float32_batch, check_logits, runner_identity
from segshield.errors import (
    EngineInputError,
    EngineUnavailableError,
    ModelLoadError,
    ModelOutputError,
)


class TorchRunner:
    """Run an fp32 `nn.Module` on `device` under `torch.inference_mode`.

    The runner takes ownership of the module's placement and mode: it is moved to `device`
    and put in eval mode (BatchNorm/Dropout in inference behaviour) at construction.

    Args:
        model: maps float32 (N,C,H,W) images in [0,1] to (N,K,H,W) logits.
        device: torch device string, e.g. "cpu", "cuda", "cuda:1".
        in_channels: if given, batches with another channel count are refused up front.
        name: label for reports (default "pytorch").
    """

    kind = "pytorch"
    precision = "fp32"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        *,
        in_channels: int | None = None,
        name: str = "pytorch",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"TorchRunner needs a torch.nn.Module, got {type(model).__name__}")
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise EngineUnavailableError(
                    f"requested torch device {str(dev)!r} but CUDA is not available to PyTorch"
                )
            if dev.index is None:
                # Record the concrete GPU so the report says exactly what ran.
                dev = torch.device("cuda", torch.cuda.current_device())
        for pname, param in model.named_parameters():
            if param.is_floating_point() and param.dtype != torch.float32:
                raise ModelLoadError(
                    f"TorchRunner runs fp32 models; parameter {pname!r} is {param.dtype}"
                )
        self.model = model.to(dev).eval()
        self.device = dev
        self.in_channels = in_channels
        self.name = name
        self.providers: list[str] = [str(dev)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits (numpy, on CPU)."""
        images = as_float32_batch(batch, self.name)
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            raise EngineInputError(
                f"engine '{self.name}' expects (N,{self.in_channels},H,W), got {images.shape}"
            )
        with torch.inference_mode():
            try:
                out = self.model(torch.from_numpy(images).to(self.device))
            except RuntimeError as exc:
                # Almost always a shape/channel mismatch; keep the torch message for the rest.
                raise EngineInputError(
                    f"engine '{self.name}' failed on a batch of shape {images.shape}: {exc}"
                ) from exc
            if not isinstance(out, torch.Tensor):
                raise ModelOutputError(
                    f"engine '{self.name}' returned {type(out).__name__}; expected one logits "
                    "tensor (N,K,H,W)"
                )
            logits = out.detach().float().cpu().numpy()
        return check_logits(logits, self.name, images.shape)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity of this engine."""
        return {
            **runner_identity(self),
            "model_class": type(self.model).__name__,
            "torch_version": torch.__version__,
            "artifact": None,
        }

    def __repr__(self) -> str:
        return f"TorchRunner(name={self.name!r}, device={str(self.device)!r})"


__all__ = ["TorchRunner"]
