"""Deprecated: the names that lived here moved to `registry`, `records` and `build`.

Kept only for callers that still import `segshield.engines.specs`; import from
`segshield.engines` instead.
"""

from __future__ import annotations

from segshield.engines.build import *  # noqa: F403
from segshield.engines.build import __all__ as _build_all
from segshield.engines.records import *  # noqa: F403
from segshield.engines.records import __all__ as _records_all
from segshield.engines.registry import *  # noqa: F403
from segshield.engines.registry import __all__ as _registry_all

__all__ = [*_build_all, *_records_all, *_registry_all]
