"""Native TensorRT runner for serialized engines (`.plan`). Thin on purpose.

tensorrt is imported only when a runner (or an engine build) is created. Device buffers are
torch CUDA tensors, so this also needs a CUDA build of PyTorch. Engines are specific to the GPU
model and TensorRT version that built them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segshield.engines.base import as_float32_batch, check_logits, runner_identity
from segshield.errors import EngineInputError, ModelLoadError
from segshield.lazy import import_tensorrt, tensorrt_unavailable_reason, trt_logger

logger = logging.getLogger(__name__)


class TensorRTRunner:
    """Run a serialized TensorRT engine with one FP32 image input and one FP32 logits output.

    Args:
        path: `.plan` file built by `segshield.exporters.tensorrt_engine_from_onnx`.
        precision: label for reports ("fp32", "fp16", "int8"): what the builder allowed.
        device: CUDA device, e.g. "cuda" or "cuda:1".
        name: label for reports (default "tensorrt-<precision>").

    Raises:
        EngineUnavailableError: tensorrt or CUDA missing.
        ModelLoadError: the plan cannot be deserialized (other GPU / TensorRT version).
    """

    kind = "tensorrt"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        precision: str = "fp32",
        device: str = "cuda",
        name: str | None = None,
    ) -> None:
        trt = import_tensorrt()
        from segshield.hashing import sha256_file

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"TensorRT engine not found: {self.path}")
        self.sha256 = sha256_file(self.path)
        dev = torch.device(device)
        self.device = dev if dev.index is not None else torch.device("cuda", 0)
        self._trt = trt
        with torch.cuda.device(self.device):
            runtime = trt.Runtime(trt_logger(trt))
            self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ModelLoadError(
                    f"TensorRT {trt.__version__} cannot deserialize {self.path} (built for "
                    "another GPU or TensorRT version?)"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(f"{self.path} has inputs {inputs}, outputs {outputs}")
        self.input_name = inputs[0]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        for tensor in (self.input_name, self.output_name):
            if self.engine.get_tensor_dtype(tensor) != trt.float32:
                raise ModelLoadError(f"{self.path}: tensor {tensor!r} is not float32 IO")
        _, _, max_shape = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_batch = int(max_shape[0])
        self.input_chw = tuple(int(d) for d in max_shape[1:])
        self.precision = precision
        self.name = name or f"tensorrt-{precision}"
        self.providers: list[str] = [f"tensorrt-{trt.__version__}", str(self.device)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits."""
        images = as_float32_batch(batch, self.name)
        if tuple(images.shape[1:]) != self.input_chw:
            raise EngineInputError(
                f"engine '{self.name}' expects (N,{','.join(map(str, self.input_chw))}), got "
                f"{images.shape}"
            )
        chunks = []
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            for start in range(0, images.shape[0], self.max_batch):
                x = torch.from_numpy(images[start : start + self.max_batch]).to(self.device)
                self.context.set_input_shape(self.input_name, tuple(x.shape))
                shape = tuple(self.context.get_tensor_shape(self.output_name))
                y = torch.empty(shape, dtype=torch.float32, device=self.device)
                self.context.set_tensor_address(self.input_name, x.data_ptr())
                self.context.set_tensor_address(self.output_name, y.data_ptr())
                if not self.context.execute_async_v3(stream.cuda_stream):
                    raise ModelLoadError(f"TensorRT execution failed for batch {tuple(x.shape)}")
                stream.synchronize()
                chunks.append(y.cpu().numpy())
        logits = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return check_logits(logits, self.name, images.shape)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity, including the plan hash."""
        return {
            **runner_identity(self),
            "tensorrt_version": str(self._trt.__version__),
            "max_batch": self.max_batch,
            "artifact": {"path": str(self.path), "sha256": self.sha256},
        }


__all__ = ["TensorRTRunner", "import_tensorrt", "tensorrt_unavailable_reason", "trt_logger"]
