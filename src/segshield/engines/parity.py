"""Clean parity of an engine against the FP32 PyTorch source: probability error and mask flips.

Pure numpy. Logit differences are misleading for segmentation (a logit error of 2 at -15 is
invisible, one of 0.01 at 0 flips a pixel), so parity is measured on the probabilities and on
the thresholded masks the audit actually scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def probabilities(logits: np.ndarray, activation: str | None = None) -> np.ndarray:
    """(N,K,...) logits -> float64 probabilities along axis 1.

    activation: "sigmoid" (per channel: binary, multi-label) or "softmax" (over K: multi-class,
    classifier); None picks sigmoid for K == 1 and softmax otherwise.
    """
    x = np.asarray(logits, dtype=np.float64)
    if _activation(x.shape[1], activation) == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free sigmoid
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _activation(channels: int, activation: str | None) -> str:
    if activation is None:
        return "sigmoid" if channels == 1 else "softmax"
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
    return activation


def masks_from_probabilities(
    probs: np.ndarray, threshold: float = 0.5, activation: str | None = None
) -> np.ndarray:
    """Thresholded (sigmoid: (N,K,...) bool) or arg-max (softmax: (N,...) int) masks."""
    if _activation(probs.shape[1], activation) == "sigmoid":
        return probs > threshold
    return probs.argmax(axis=1)


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return None if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def mask_agreement(
    source_masks: np.ndarray, engine_masks: np.ndarray, activation: str, channels: int
) -> float:
    """Agreement in [0, 1] of an engine's masks with the source's on the same images.

    sigmoid masks (N,K,...) bool: mean over the K channels of the engine-vs-source Dice.
    softmax label maps (N,...) int with K classes: mean over the foreground classes 1..K-1
    (for a classifier's (N,) predictions: the share of images with the same class).
    Channels/classes empty on both sides are left out; all empty on both sides is 1.0.
    """
    if activation == "softmax" and source_masks.ndim == 1:  # classifier: one label per image
        return float(np.mean(source_masks == engine_masks)) if source_masks.size else 1.0
    if activation == "sigmoid":
        pairs = [(source_masks[:, k], engine_masks[:, k]) for k in range(channels)]
    else:
        pairs = [(source_masks == k, engine_masks == k) for k in range(1, channels)]
    scores = [d for d in (_dice(a, b) for a, b in pairs) if d is not None]
    return float(np.mean(scores)) if scores else 1.0


def parity_stats(
    source_logits: np.ndarray,
    engine_logits: np.ndarray,
    threshold: float = 0.5,
    activation: str | None = None,
) -> dict[str, Any]:
    """Compare an engine's logits with the source's on the same images.

    Args:
        source_logits: (N,K), (N,K,H,W) or (N,K,D,H,W) logits of the FP32 PyTorch source.
        engine_logits: the engine's logits on the same images, same shape.
        threshold: probability threshold of sigmoid masks (ignored for softmax).
        activation: "sigmoid" | "softmax" | None (sigmoid for K == 1, else softmax).

    Returns a JSON-serialisable dict:
        n_images, pixels: images compared and mask values per comparison;
        prob_max_abs_err, prob_median_abs_err, prob_p99_abs_err: |p_engine - p_source| over
            all probability values;
        logit_max_abs_err: largest |logit difference|; logit_scale: largest |source logit|
            and logit_max_rel_err = logit_max_abs_err / logit_scale (for export debugging:
            an absolute logit error means nothing without the scale);
        flipped_pixels, flip_share: mask values whose prediction differs, and their share;
        mask_dice: `mask_agreement` of the engine's masks with the source's;
        threshold, activation: what was used.

    Raises:
        ValueError: shapes differ or have an unsupported rank, or logits are not finite.
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
    act = _activation(src.shape[1], activation)
    p_src = probabilities(src, act)
    p_eng = probabilities(eng, act)
    err = np.abs(p_eng - p_src).ravel()
    m_src = masks_from_probabilities(p_src, threshold, act)
    m_eng = masks_from_probabilities(p_eng, threshold, act)
    flipped = int(np.count_nonzero(m_src != m_eng))
    pixels = int(m_src.size)
    logit_err = float(np.abs(eng.astype(np.float64) - src.astype(np.float64)).max())
    scale = float(np.abs(src).max())
    return {
        "n_images": int(src.shape[0]),
        "pixels": pixels,
        "prob_max_abs_err": float(err.max()),
        "prob_median_abs_err": float(np.median(err)),
        "prob_p99_abs_err": float(np.percentile(err, 99)),
        "logit_max_abs_err": logit_err,
        "logit_scale": scale,
        "logit_max_rel_err": logit_err / scale if scale > 0 else 0.0,
        "flipped_pixels": flipped,
        "flip_share": flipped / pixels,
        "mask_dice": mask_agreement(m_src, m_eng, act, int(src.shape[1])),
        "threshold": float(threshold),
        "activation": act,
    }


__all__ = ["mask_agreement", "masks_from_probabilities", "parity_stats", "probabilities"]
