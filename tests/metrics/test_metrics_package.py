"""The metrics package is pure NumPy: importing it must not pull in torch."""

from __future__ import annotations

import os
import subprocess
import sys

import segshield.metrics as metrics


def test_public_api_exported() -> None:
    for name in metrics.__all__:
        assert hasattr(metrics, name), name


def test_import_does_not_load_torch() -> None:
    code = "import sys, segshield.metrics; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
