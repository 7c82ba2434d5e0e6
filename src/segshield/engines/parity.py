"""Clean parity of an engine against the FP32 PyTorch source: probability error and mask flips.

Pure numpy. Logit differences are misleading for segmentation (a logit error of 2 at -15 is
invisible, one of 0.01 at 0 flips a pixel), so parity is measured on the probabilities and on
the thresholded masks the audit actually scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def probabilities(logits: np.ndarray) -> np.ndarray:
    """(N,K,H,W) logits -> float64 probabilities: sigmoid for K == 1, softmax over K otherwise."""
    x = np.asarray(logits, dtype=np.float64)
    if x.shape[1] == 1:
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free sigmoid
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def masks_from_probabilities(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary (K == 1: prob > threshold) or argmax (K > 1) masks, (N,1,H,W) or (N,H,W)."""
    if probs.shape[1] == 1:
        return probs > threshold
    return probs.argmax(axis=1)


def parity_stats(
    source_logits: np.ndarray, engine_logits: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Compare an engine's logits with the source's on the same images.

    Args:
        source_logits: (N,K,H,W) logits of the FP32 PyTorch source model.
        engine_logits: (N,K,H,W) logits of the engine on the same images.
        threshold: probability threshold of the binary mask (K == 1; ignored for K > 1).

    Returns a JSON-serialisable dict:
        n_images, pixels: images compared and mask pixels per comparison (N*H*W);
        prob_max_abs_err, prob_median_abs_err, prob_p99_abs_err: |p_engine - p_source| over
            all probability values (sigmoid for K == 1, softmax for K > 1);
        logit_max_abs_err: largest |logit difference| (for export debugging);
        flipped_pixels, flip_share: mask pixels whose prediction differs, and their share;
        mask_dice: Dice of the engine's foreground mask against the source's (1.0 when both
            are empty; K == 1 only, else None);
        threshold: the threshold used.

    Raises:
        ValueError: shapes differ, are not rank 4, or logits are not finite.
    """
    src = np.asarray(source_logits)
    eng = np.asarray(engine_logits)
    if src.shape != eng.shape or src.ndim not in (2, 4, 5) or src.shape[0] == 0:
        raise ValueError(
            "parity needs two logits arrays of the same shape (N,K), (N,K,H,W) or "
            f"(N,K,D,H,W), got {src.shape} and {eng.shape}"
        )
    if not (0.0 < threshold < 1.0):
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    for label, arr in (("source", src), ("engine", eng)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{label} logits contain NaN or Inf; parity is undefined")
    p_src = probabilities(src)
    p_eng = probabilities(eng)
    err = np.abs(p_eng - p_src).ravel()
    m_src = masks_from_probabilities(p_src, threshold)
    m_eng = masks_from_probabilities(p_eng, threshold)
    flipped = int(np.count_nonzero(m_src != m_eng))
    pixels = int(m_src.size)
    mask_dice: float | None = None
    if src.shape[1] == 1:
        inter = int(np.count_nonzero(m_src & m_eng))
        total = int(np.count_nonzero(m_src)) + int(np.count_nonzero(m_eng))
        mask_dice = 1.0 if total == 0 else 2.0 * inter / total
    return {
        "n_images": int(src.shape[0]),
        "pixels": pixels,
        "prob_max_abs_err": float(err.max()),
        "prob_median_abs_err": float(np.median(err)),
        "prob_p99_abs_err": float(np.percentile(err, 99)),
        "logit_max_abs_err": float(np.abs(eng.astype(np.float64) - src.astype(np.float64)).max()),
        "flipped_pixels": flipped,
        "flip_share": flipped / pixels,
        "mask_dice": mask_dice,
        "threshold": float(threshold),
    }


__all__ = ["masks_from_probabilities", "parity_stats", "probabilities"]
