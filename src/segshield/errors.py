"""Error types. Every error a user can cause is a `SegShieldError` with a message that names
the file, shape or key at fault; the CLI turns them into exit code 2 without a traceback."""

from __future__ import annotations


class SegShieldError(Exception):
    """Base class of all errors segshield raises on purpose."""


class DataError(SegShieldError):
    """An image or mask cannot be used (unreadable, missing mask, size mismatch, non-binary)."""


class ModelLoadError(SegShieldError):
    """A model or its weights cannot be loaded, or loading was refused as unsafe."""


class ModelOutputError(SegShieldError):
    """A model returned something unusable (NaN/Inf, wrong shape)."""


class ExportError(SegShieldError):
    """Export to an engine format failed, or the exported engine disagrees with the source."""


class EngineUnavailableError(SegShieldError):
    """An engine's backend is not installed, or it would not run on the requested provider."""


class EngineInputError(SegShieldError):
    """A batch does not match what an engine expects (rank, channels, dtype)."""


class PolicyError(SegShieldError):
    """A gate policy file is malformed (unknown keys, bad values)."""


class ReportError(SegShieldError):
    """A report file cannot be read (not JSON, wrong schema version)."""
