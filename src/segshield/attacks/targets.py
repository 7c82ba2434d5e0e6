"""Target masks for targeted attacks (ASMA), built from the true masks.

All helpers take masks in the layouts of :mod:`segshield.attacks.layout` - ``(N, 1, H, W)``
binary, ``(N, C, H, W)`` multi-label or ``(N, H, W)`` class indices - and return a new tensor of
the same shape, dtype and device (the input is not modified). Background is 0 (the empty mask /
class 0). They do no I/O: reading a target mask from a file is the data stage's job.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["empty_target", "other_image_target", "scaled_target", "shifted_target"]


def _check_masks(masks: Tensor, owner: str) -> None:
    if not isinstance(masks, Tensor):
        raise TypeError(f"{owner}: masks must be a tensor, got {type(masks).__name__}")
    if masks.ndim not in (3, 4):
        raise ValueError(
            f"{owner}: masks must be (N, H, W) class indices or (N, C, H, W) 0/1 masks, "
            f"got shape {tuple(masks.shape)}"
        )


def empty_target(masks: Tensor) -> Tensor:
    """All background: the attack should hide every lesion (``zeros_like(masks)``)."""
    _check_masks(masks, "empty_target")
    return torch.zeros_like(masks)


def other_image_target(masks: Tensor) -> Tensor:
    """Image ``i`` gets the mask of image ``i - 1`` (the batch rolled by one; image 0 gets the
    last one's), as in Ozbulak et al., where one image is pushed towards another's mask.

    Needs at least two images (with one, the target would be its own mask).
    """
    _check_masks(masks, "other_image_target")
    if masks.shape[0] < 2:
        raise ValueError(
            f"other_image_target: needs a batch of at least 2 masks, got {masks.shape[0]}"
        )
    return torch.roll(masks, shifts=1, dims=0)


def shifted_target(masks: Tensor, dy: int, dx: int) -> Tensor:
    """The masks moved ``dy`` pixels down and ``dx`` pixels right (negative: up / left); what
    moves out of the image is dropped, what is uncovered is background (no wrap-around)."""
    _check_masks(masks, "shifted_target")
    dy, dx = int(dy), int(dx)
    h, w = masks.shape[-2:]
    out = torch.zeros_like(masks)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y, dst_y = slice(max(-dy, 0), h - max(dy, 0)), slice(max(dy, 0), h - max(-dy, 0))
    src_x, dst_x = slice(max(-dx, 0), w - max(dx, 0)), slice(max(dx, 0), w - max(-dx, 0))
    out[..., dst_y, dst_x] = masks[..., src_y, src_x]
    return out


def _source_index(size: int, factor: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """Nearest source index of every output index for a zoom by ``factor`` about the centre,
    and whether it falls inside the image."""
    centre = (size - 1) / 2.0
    pos = torch.arange(size, device=device, dtype=torch.float64)
    src = torch.floor(centre + (pos - centre) / factor + 0.5).long()
    inside = (src >= 0) & (src < size)
    return src.clamp(0, size - 1), inside


def scaled_target(masks: Tensor, factor: float) -> Tensor:
    """The masks zoomed by ``factor`` about the image centre (nearest neighbour): ``> 1`` grows
    the lesion, ``< 1`` shrinks it; what falls outside is dropped, the rest is background.

    Output pixel ``(i, j)`` takes the input at ``centre + ((i, j) - centre) / factor``, rounded,
    with ``centre = ((H - 1) / 2, (W - 1) / 2)``; ``factor = 1`` returns an exact copy.
    """
    _check_masks(masks, "scaled_target")
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise ValueError(f"scaled_target: factor must be a number > 0, got {factor!r}") from None
    if not math.isfinite(f) or f <= 0.0:
        raise ValueError(f"scaled_target: factor must be a finite number > 0, got {factor!r}")
    h, w = masks.shape[-2:]
    ys, y_in = _source_index(h, f, masks.device)
    xs, x_in = _source_index(w, f, masks.device)
    out = masks[..., ys, :][..., :, xs]
    inside = y_in[:, None] & x_in[None, :]
    return torch.where(inside, out, torch.zeros_like(out))
