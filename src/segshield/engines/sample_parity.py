"""Clean parity of engines on a sample of real images: the checked sample, the source's
logits on it, and the re-check of engines loaded from a manifest (``--engines-dir``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from segshield.engines.base import infer_batched
from segshield.engines.parity import parity_stats
from segshield.enums import Status
from segshield.errors import DataError

if TYPE_CHECKING:
    from segshield.engines.build import BuiltEngine

logger = logging.getLogger(__name__)

PARITY_BATCH = 8  # images per parity inference call

__all__ = ["PARITY_BATCH", "check_sample", "remeasure_parity", "source_logits"]


def check_sample(sample: object) -> np.ndarray:
    if not isinstance(sample, np.ndarray) or sample.ndim not in (4, 5) or sample.shape[0] == 0:
        shape = getattr(sample, "shape", type(sample).__name__)
        raise DataError(
            f"sample must be a non-empty image array (N,C,H,W) or (N,C,D,H,W), got {shape}"
        )
    if not np.issubdtype(sample.dtype, np.floating):
        raise DataError(f"sample must be float images in [0,1], got dtype {sample.dtype}")
    arr = np.ascontiguousarray(sample, dtype=np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise DataError("sample must be finite images in [0,1]")
    return arr


def source_logits(model: nn.Module, sample: np.ndarray) -> np.ndarray:
    """FP32 logits of the source model on `sample`, on the model's own device."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(sample), PARITY_BATCH):
            x = torch.from_numpy(sample[start : start + PARITY_BATCH]).to(device)
            chunks.append(model(x).float().cpu().numpy())
    return np.concatenate(chunks)


def remeasure_parity(
    built: Sequence[BuiltEngine],
    model: nn.Module,
    sample: np.ndarray,
    *,
    threshold: float = 0.5,
    activation: str | None = None,
) -> None:
    """Measure the clean parity of already-built engines (loaded from a manifest) again, on
    `sample` (this audit's images), replacing the stored parity; the manifest's value is kept
    under ``parity["manifest"]``. An engine that fails on `sample` becomes status "error"."""
    sample_arr = check_sample(sample)
    source = source_logits(model, sample_arr)
    for engine in built:
        if not engine.ok or engine.runner is None:
            continue
        record, stored = engine.record, engine.record.parity
        try:
            logits = infer_batched(engine.runner, sample_arr, PARITY_BATCH)
            record.parity = {
                **parity_stats(source, logits, threshold, activation),
                "manifest": stored,
            }
        except Exception as exc:  # a wrong file behind matching hashes: record, go on
            record.status = Status.ERROR
            record.reason = f"re-checking parity on the audited images failed: {exc}"
            engine.runner = None
            logger.error("engine %s: %s", record.name, record.reason)
