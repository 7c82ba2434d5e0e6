"""AOTInductor runner: a `.pt2` package compiled by `segshield.exporters.aoti_from_torch`.

Loading a `.pt2` loads the shared library inside it, i.e. runs native code: only load packages
you built (the manifest records and checks their SHA-256).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segshield.engines.base import as_float32_batch, check_logits, runner_identity
from segshield.errors import EngineInputError, EngineUnavailableError, ModelLoadError
from segshield.hashing import sha256_file

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class AotiRunner:
    """Run an AOTInductor package on CPU or CUDA.

    Args:
        path: `.pt2` package taking (B,C,H,W) inputs of `precision`, 1 <= B <= `max_batch`.
        device: "cpu" or "cuda"/"cuda:<i>" — must match what the package was compiled for.
        precision: "fp32", "fp16" or "bf16": inputs are cast to it, logits cast back to fp32.
        input_chw: expected (C,H,W); other shapes are refused with EngineInputError.
        max_batch: larger batches are run in chunks of `max_batch`.
        name: label for reports (default "aoti-<precision>", with "-cuda" on GPU).

    Raises:
        EngineUnavailableError: CUDA requested but not available to PyTorch.
        ModelLoadError: missing or unloadable package.
    """

    kind = "aoti"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        input_chw: tuple[int, ...] | None = None,
        max_batch: int = 64,
        name: str | None = None,
    ) -> None:
        if precision not in _DTYPES:
            raise ModelLoadError(f"unknown precision {precision!r}; choose from {sorted(_DTYPES)}")
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise EngineUnavailableError(
                    f"AOTInductor package {Path(path).name} targets {dev} but CUDA is not "
                    f"available to PyTorch (torch {torch.__version__})"
                )
            if dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"AOTInductor package not found: {self.path}")
        self.sha256 = sha256_file(self.path)
        try:
            inductor = importlib.import_module("torch._inductor")
            self._model = inductor.aoti_load_package(str(self.path))
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load AOTInductor package {self.path}: {type(exc).__name__}: {exc}"
            ) from exc
        self.device = dev
        self.precision = precision
        self._dtype = _DTYPES[precision]
        self.input_chw = tuple(input_chw) if input_chw is not None else None
        self.max_batch = int(max_batch)
        suffix = "" if dev.type == "cpu" else "-cuda"
        self.name = name or f"aoti{suffix}-{precision}"
        self.providers: list[str] = [str(dev)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N,C,H,W) images in [0,1] -> float32 (N,K,H,W) logits."""
        images = as_float32_batch(batch, self.name)
        if self.input_chw is not None and tuple(images.shape[1:]) != self.input_chw:
            raise EngineInputError(
                f"engine '{self.name}' expects (N,{','.join(map(str, self.input_chw))}), got "
                f"{images.shape}; AOTInductor packages are compiled for one image size"
            )
        chunks = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], self.max_batch):
                x = torch.from_numpy(images[start : start + self.max_batch])
                x = x.to(device=self.device, dtype=self._dtype)
                out = self._model(x)
                if isinstance(out, (list, tuple)):
                    out = out[0]
                chunks.append(out.float().cpu().numpy())
        logits = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return check_logits(logits, self.name, images.shape)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity, including the package hash."""
        return {
            **runner_identity(self),
            "torch_version": torch.__version__,
            "max_batch": self.max_batch,
            "artifact": {"path": str(self.path), "sha256": self.sha256},
        }

    def __repr__(self) -> str:
        return (
            f"AotiRunner(name={self.name!r}, path={str(self.path)!r}, device={str(self.device)!r})"
        )


__all__ = ["AotiRunner"]
