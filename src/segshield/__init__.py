"""segshield: robustness audits of medical segmentation models and their deployed engines.

Importing the package is cheap: heavy backends (onnxruntime, tensorrt) load lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

from segshield.errors import (
    DataError,
    EngineUnavailableError,
    ExportError,
    ModelLoadError,
    PolicyError,
    SegShieldError,
)

__all__ = [
    "DataError",
    "EngineUnavailableError",
    "ExportError",
    "ModelLoadError",
    "PolicyError",
    "SegShieldError",
    "__version__",
]
