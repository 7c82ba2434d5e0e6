"""PyTorch reference runner: the model as trained, in eval mode, no autograd, on whatever
device the module is on (CPU or CUDA)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.devices import module_device
from segshield.engines.base import as_float32_batch, check_logits, runner_identity
from segshield.errors import (
    EngineInputError,
    EngineUnavailableError,
    ModelLoadError,
    ModelOutputError,
)


class TorchRunner:
    """Run an fp32 `nn.Module` under `torch.inference_mode` on the module's own device.

    The runner puts the module in eval mode (BatchNorm/Dropout in inference behaviour) and,
    when `device` is given, moves it there at construction. Each batch then goes to wherever
    the module is *when it is called* (a module placed on a GPU for an audit and back
    afterwards is followed), in channels-last format when the module's conv weights are
    channels-last; the logits come back as CPU float32 numpy, the one host sync per call.

    Args:
        model: maps float32 (N,C,H,W) images in [0,1] to (N,K,H,W) logits.
        device: torch device string, e.g. "cpu", "cuda", "cuda:1"; None (default): leave the
            module where it is.
        in_channels: if given, batches with another channel count are refused up front.
        name: label for reports (default "pytorch").
    """

    kind = "pytorch"
    precision = "fp32"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        *,
        in_channels: int | None = None,
        name: str = "pytorch",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"TorchRunner needs a torch.nn.Module, got {type(model).__name__}")
        dev = module_device(model) if device is None else torch.device(device)
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
        self.in_channels = in_channels
        self.name = name

    @property
    def device(self) -> torch.device:
        """Where the module is now (the batches follow it)."""
        return module_device(self.model)

    @property
    def providers(self) -> list[str]:
        return [str(self.device)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits (numpy, on CPU)."""
        images = as_float32_batch(batch, self.name)
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            raise EngineInputError(
                f"engine '{self.name}' expects (N,{self.in_channels},H,W), got {images.shape}"
            )
        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device)
            if _channels_last(self.model):
                x = x.contiguous(memory_format=torch.channels_last)
            try:
                out = self.model(x)
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


def _channels_last(model: nn.Module) -> bool:
    """True when the first conv weight whose formats differ (not 1x1) is channels-last."""
    for param in model.parameters():
        if param.ndim == 4:
            last = param.is_contiguous(memory_format=torch.channels_last)
            if last != param.is_contiguous():
                return last
    return False


__all__ = ["TorchRunner"]
