"""Binary cross-entropy in NumPy, per image, for scoring engines that only return logits."""

from __future__ import annotations

import numpy as np

__all__ = ["bce_from_logits", "bce_from_probs", "bce_logits_per_pixel", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64, without overflow warnings for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def _check(name: str, values: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v, t = np.asarray(values, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if v.shape != t.shape:
        raise ValueError(f"{name} and target shapes differ: {name} {v.shape} vs target {t.shape}")
    if v.ndim < 1:
        raise ValueError(f"{name} and target need a batch axis (N, ...), got shape {v.shape}")
    # Soft targets are allowed; anything outside [0, 1] (or NaN) is a bug upstream.
    if t.size and not np.all((t >= 0) & (t <= 1)):
        raise ValueError(f"target of shape {t.shape} must lie in [0, 1]")
    return v, t


def _per_image_mean(per_pixel: np.ndarray) -> np.ndarray:
    flat = per_pixel.reshape(per_pixel.shape[0], -1)
    if flat.shape[1] == 0:
        return np.full(flat.shape[0], np.nan)
    return flat.mean(axis=1)


def bce_logits_per_pixel(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Element-wise BCE of ``sigmoid(logits)`` vs ``target``, float64, same shape as inputs.

    Uses ``logaddexp(0, x) - x * t``: exact and overflow-free for any finite logit (like
    ``torch.nn.BCEWithLogitsLoss``).
    """
    x, t = _check("logits", logits, target)
    return np.logaddexp(0.0, x) - x * t


def bce_from_logits(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image mean binary cross-entropy (nats) of ``sigmoid(logits)`` against ``target``.

    Args:
        logits: float array (N, ...), e.g. (N,1,H,W); finite.
        target: same shape, values in [0, 1] (usually {0, 1}).

    Returns:
        float64 array of shape (N,), values >= 0.
    """
    return _per_image_mean(bce_logits_per_pixel(logits, target))


def bce_from_probs(probs: np.ndarray, target: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Per-image mean binary cross-entropy (nats) of probabilities against ``target``.

    Probabilities are clipped to [eps, 1 - eps] (Keras' default eps), so a confident wrong pixel
    costs at most -log(eps) (about 16.1) instead of infinity.

    Args:
        probs: float array (N, ...) of probabilities in [0, 1].
        target: same shape, values in [0, 1] (usually {0, 1}).
        eps: clipping margin, in (0, 0.5).

    Returns:
        float64 array of shape (N,), values >= 0.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    p, t = _check("probs", probs, target)
    p = np.clip(p, eps, 1.0 - eps)
    per_pixel = -(t * np.log(p) + (1.0 - t) * np.log1p(-p))
    return _per_image_mean(per_pixel)
