"""SHA-256 helpers for artifacts (weights, ONNX files, data) recorded in reports."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

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


def canonical_json(value: Any) -> bytes:
    """The canonical JSON of ``value`` as bytes: sorted keys, no whitespace, ASCII only
    (non-ASCII characters, lone surrogates of undecodable file names included, as ``\\u``
    escapes), NaN/Infinity refused (they have no JSON form). Equal values give equal bytes
    on every machine and Python version."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode("ascii")


def stable_seed(*parts: Any) -> int:
    """A seed in [0, 2**63) derived from ``parts`` (JSON values) by SHA-256 of their canonical
    JSON: the same parts give the same seed in every process (unlike ``hash()``, which is
    salted per process for strings)."""
    digest = hashlib.sha256(canonical_json(list(parts))).digest()
    return int.from_bytes(digest[:8], "big") >> 1


__all__ = ["canonical_json", "sha256_bytes", "sha256_file", "stable_seed"]
