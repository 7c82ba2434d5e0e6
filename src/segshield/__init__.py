"""segshield: robustness audits of medical segmentation models and their deployed engines.

Importing the package is cheap: heavy backends (onnxruntime, tensorrt) load lazily, and so
does ``segshield.audit`` (the notebook API, :func:`segshield.notebook.audit`).
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
    "audit",
]


def __getattr__(name: str):
    # segshield.audit imports torch: only when it is first used, not on `import segshield`
    if name == "audit":
        from segshield.notebook import audit

        return audit
    raise AttributeError(f"module 'segshield' has no attribute {name!r}")
