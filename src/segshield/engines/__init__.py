"""Inference engines behind one `Runner` contract (Polygraphy-style: one runner per backend).

Importing this package does not import onnxruntime; it is loaded when an `OrtRunner` is
built, so segshield works without onnxruntime-gpu or TensorRT installed.
"""

from __future__ import annotations

from segshield.engines.base import Runner, infer_batched
from segshield.engines.ort_runner import OrtRunner, available_ort_providers
from segshield.engines.torch_runner import TorchRunner

__all__ = ["OrtRunner", "Runner", "TorchRunner", "available_ort_providers", "infer_batched"]
