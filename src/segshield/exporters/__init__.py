"""Exporters: turn a PyTorch model into a verified deployment artifact (`XFromY` loaders)."""

from __future__ import annotations

from segshield.exporters.onnx import OnnxExport, onnx_from_torch
from segshield.hashing import sha256_bytes, sha256_file

__all__ = ["OnnxExport", "onnx_from_torch", "sha256_bytes", "sha256_file"]
