"""How large and how visible a perturbation is: per-image norms and SSIM of clean vs adversarial."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["SSIM_MIN_SIZE", "perturbation_norms", "ssim"]

# Wang et al. (2004) use an 11-tap Gaussian window (sigma 1.5). Below 11 px we shrink the window
# (only the border crop changes; the Gaussian weights stay); below 7 px SSIM is mostly border.
SSIM_MIN_SIZE = 7
_WANG_WIN = 11


def _check_pair(clean: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, a = np.asarray(clean), np.asarray(adv)
    if c.shape != a.shape:
        raise ValueError(f"clean and adv shapes differ: clean {c.shape} vs adv {a.shape}")
    if c.ndim not in (4, 5):
        raise ValueError(
            "clean and adv must be (N,C,H,W) images or (N,C,D,H,W) volumes, got clean "
            f"{c.shape} and adv {a.shape}"
        )
    return c.astype(np.float64, copy=False), a.astype(np.float64, copy=False)


def perturbation_norms(clean: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image L2 and L-infinity norms of ``adv - clean`` over all non-batch axes.

    Args:
        clean, adv: float arrays of identical shape (N,C,H,W) or (N,C,D,H,W).

    Returns:
        (l2, linf): float64 arrays of shape (N,), both >= 0, in the units of the pixel values.
    """
    c, a = _check_pair(clean, adv)
    delta = (a - c).reshape(c.shape[0], -1)
    if delta.shape[1] == 0:
        zeros = np.zeros(c.shape[0])
        return zeros, zeros.copy()
    return np.linalg.norm(delta, axis=1), np.abs(delta).max(axis=1)


def ssim(clean: np.ndarray, adv: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Per-image mean SSIM (Wang et al. 2004) of ``adv`` against ``clean``.

    Gaussian window with sigma 1.5, population covariances, K1 = 0.01, K2 = 0.03, as in the
    paper; channels (C > 1) are scored separately and averaged. Images with a side of 7 to 10 px
    use the largest odd window that fits.

    Args:
        clean, adv: float arrays of identical shape (N,C,H,W), or (N,C,D,H,W) for volumes
            (3-D SSIM, the window a cube), values within ``data_range``.
        data_range: max - min of the pixel scale, e.g. 1.0 for [0, 1] images, 255 for uint8.

    Returns:
        float64 array of shape (N,), values in [-1, 1]; 1 for identical images.

    Raises:
        ValueError: shapes differ or are not 4-D (shapes named), H or W < 7, bad data_range.
    """
    c, a = _check_pair(clean, adv)
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    n, ch = c.shape[:2]
    side = min(c.shape[2:])
    if side < SSIM_MIN_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} px, got shape {c.shape}"
        )
    win_size = _WANG_WIN if side >= _WANG_WIN else side - (1 - side % 2)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        # skimage wants channels last; a single channel is passed as a plain 2-D image.
        if ch == 1:
            im_c, im_a, channel_axis = c[i, 0], a[i, 0], None
        else:
            im_c, im_a, channel_axis = np.moveaxis(c[i], 0, -1), np.moveaxis(a[i], 0, -1), -1
        out[i] = structural_similarity(
            im_c,
            im_a,
            win_size=win_size,
            data_range=float(data_range),
            channel_axis=channel_axis,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    return out
