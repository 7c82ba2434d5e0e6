"""Exporters: turn a PyTorch model into a verified deployment artifact (`XFromY` loaders).

`onnx_from_torch` (FP32 ONNX with parity), `onnx_fp16_from_onnx`, `onnx_int8_from_onnx`
(static QDQ, calibrated on real images), `onnx_int8_dynamic_from_onnx`, `aoti_from_torch`
(AOTInductor `.pt2`) and `tensorrt_engine_from_onnx` (native TensorRT `.plan`). Backends are
imported when an exporter runs, not when this package is imported.
"""

from __future__ import annotations

from segshield.exporters.aoti import AotiExport, aoti_from_torch
from segshield.exporters.calibration import ImageCalibrationReader
from segshield.exporters.onnx import OnnxExport, onnx_from_torch
from segshield.exporters.onnx_fp16 import onnx_fp16_from_onnx
from segshield.exporters.onnx_graph import OnnxVariant
from segshield.exporters.onnx_int8 import onnx_int8_dynamic_from_onnx, onnx_int8_from_onnx
from segshield.exporters.tensorrt import TensorRTBuild, tensorrt_engine_from_onnx
from segshield.hashing import sha256_bytes, sha256_file

__all__ = [
    "AotiExport",
    "ImageCalibrationReader",
    "OnnxExport",
    "OnnxVariant",
    "TensorRTBuild",
    "aoti_from_torch",
    "onnx_fp16_from_onnx",
    "onnx_from_torch",
    "onnx_int8_dynamic_from_onnx",
    "onnx_int8_from_onnx",
    "sha256_bytes",
    "sha256_file",
    "tensorrt_engine_from_onnx",
]
