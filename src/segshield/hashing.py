"""SHA-256 helpers for artifacts (weights, ONNX files, data) recorded in reports."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20  # 1 MiB: bounded memory for multi-GB weight files


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 digest (64 lowercase characters) of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of the file at `path`, read in chunks.

    Raises OSError (e.g. FileNotFoundError) when the file cannot be read.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["sha256_bytes", "sha256_file"]
