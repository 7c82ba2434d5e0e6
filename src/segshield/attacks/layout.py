"""Output layouts shared by the losses and the attacks: validation, predictions and overlap.

The layout is decided by the shapes of ``logits`` and ``target``:

=============== ======================== ============================================
layout          logits                   target
=============== ======================== ============================================
binary          ``(N, 1, H, W)``         ``(N, 1, H, W)``, values in {0, 1}
volumes         ``(N, C, D, H, W)``      as above with ``D`` before ``H`` (folded into
                                         ``(N, C, D*H, W)``: every loss is per voxel or
                                         a sum over voxels)
multi-label     ``(N, C, H, W)``, C >= 2 ``(N, C, H, W)``, {0, 1} per channel
multi-class     ``(N, C, H, W)``, C >= 2 ``(N, H, W)`` integer class indices in [0, C)
classification  ``(N, K)``               ``(N,)`` class indices (K >= 2), or ``(N, K)``
                                         {0, 1} (binary / multi-label, independent
                                         sigmoids)
=============== ======================== ============================================

Binary and multi-label outputs are *sigmoid* layouts (one independent probability per channel,
the prediction is ``logit > 0``); multi-class is the *softmax* layout (the prediction is the
arg-max). Classification outputs are handled as ``1 x 1`` images, so every loss and attack that
works on segmentation maps works on classifiers too.

Binary targets may be float, integer or bool; multi-class targets any integer dtype.
Half-precision logits are up-cast to float32 so the log-space arithmetic stays stable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Prepared",
    "correct_mask",
    "cosine_to_target",
    "iou_to_target",
    "pixel_accuracy",
    "predict_like",
    "prepare",
    "prepare_weight",
    "target_scores",
    "targets_checked_once",
]

# Targets whose values prepare() has checked inside the current targets_checked_once() block,
# by (id, version, layout); the tensor is kept as the value so its id is not reused meanwhile.
_CHECKED: ContextVar[dict[tuple[int, int, str, int], Tensor] | None] = ContextVar(
    "segshield_checked_targets", default=None
)


@contextlib.contextmanager
def targets_checked_once() -> Iterator[None]:
    """Inside the block, :func:`prepare` checks a target tensor's values (0/1, class range)
    only the first time it sees it (same tensor, unmodified, same layout): an attack's steps
    reuse one target tensor, and the value check costs a device-to-host sync each time."""
    token = _CHECKED.set({})
    try:
        yield
    finally:
        _CHECKED.reset(token)


def _needs_value_check(target: Tensor, layout: str, channels: int) -> bool:
    """False only inside :func:`targets_checked_once` for a target already checked there."""
    seen = _CHECKED.get()
    return seen is None or (id(target), target._version, layout, channels) not in seen


def _remember_checked(target: Tensor, layout: str, channels: int) -> None:
    """Record ``target`` as checked for this layout (inside :func:`targets_checked_once`)."""
    seen = _CHECKED.get()
    if seen is not None:
        seen[(id(target), target._version, layout, channels)] = target


class Prepared(NamedTuple):
    """Validated ``(logits, target)`` in the 4-D working layout.

    ``logits``: ``(N, C, H, W)`` floating point (float32 for half-precision input). ``target``:
    sigmoid layouts ``(N, C, H, W)`` in the logits' dtype, softmax layout ``(N, H, W)`` int64.
    ``sigmoid``: True for binary / multi-label. ``target_shape``: the caller's target shape
    (per-pixel weights and masks come back in it).
    """

    logits: Tensor
    target: Tensor
    sigmoid: bool
    target_shape: torch.Size


def prepare(logits: Tensor, target: Tensor) -> Prepared:
    """Validate shapes and values (see the module docstring); raise ``ValueError``/``TypeError``.

    Error messages name both shapes.
    """
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"logits and target must be tensors, got {type(logits).__name__} and "
            f"{type(target).__name__}"
        )
    if logits.ndim not in (2, 4, 5):
        raise ValueError(
            f"logits must be 4-D (N, C, H, W), 5-D (N, C, D, H, W) or 2-D (N, K) for a "
            f"classifier, got shape {tuple(logits.shape)} (target shape {tuple(target.shape)})"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    target_shape, given = target.shape, target
    logits, target = _fold_volume(logits, target)
    n, c = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    if c == 1 or tuple(target.shape) == tuple(logits.shape):
        if tuple(target.shape) != tuple(logits.shape):
            raise ValueError(
                f"binary logits of shape {tuple(logits.shape)} need a target of the same shape, "
                f"got target shape {tuple(target.shape)}"
            )
        if target.is_complex():
            raise ValueError(f"binary target must be real, got dtype {target.dtype}")
        target = target.to(logits.dtype)
        if _needs_value_check(given, "sigmoid", c):
            if target.numel() and bool(((target != 0) & (target != 1)).any()):
                raise ValueError(
                    f"binary / multi-label target must contain only 0 and 1, found values in "
                    f"[{target.min().item():g}, {target.max().item():g}]"
                )
            _remember_checked(given, "sigmoid", c)
        if logits.ndim == 2:
            logits, target = logits[:, :, None, None], target[:, :, None, None]
        return Prepared(logits, target, True, target_shape)
    if tuple(target.shape) != (n, *spatial):
        raise ValueError(
            f"multi-class logits of shape {tuple(logits.shape)} need a target of shape "
            f"{(n, *spatial)} (class indices) or {tuple(logits.shape)} (multi-label, 0/1 per "
            f"channel), got target shape {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"multi-class target must hold integer class indices, got dtype {target.dtype}"
        )
    target = target.long()
    if _needs_value_check(given, "softmax", c):
        if target.numel() and bool(((target < 0) | (target >= c)).any()):
            raise ValueError(
                f"multi-class target must hold class indices in [0, {c}), found values in "
                f"[{target.min().item()}, {target.max().item()}]"
            )
        _remember_checked(given, "softmax", c)
    if logits.ndim == 2:
        logits, target = logits[:, :, None, None], target[:, None, None]
    return Prepared(logits, target, False, target_shape)


def _fold_volume(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Volumes (N, C, D, H, W) as (N, C, D*H, W) views: every loss and prediction is per voxel
    or a sum over all voxels, so folding depth into height changes no value. A target whose
    shape does not fit is left as it is, for the checks to name both shapes."""
    if logits.ndim != 5:
        return logits, target
    if tuple(target.shape) == tuple(logits.shape):
        return logits.flatten(2, 3), target.flatten(2, 3)
    if tuple(target.shape) == (logits.shape[0], *logits.shape[2:]) and logits.shape[1] > 1:
        return logits.flatten(2, 3), target.flatten(1, 2)
    return logits, target


def prepare_weight(weight: Tensor, prepared: Prepared) -> Tensor:
    """Per-pixel loss weights in the working layout (the shape of ``prepared.target``).

    ``weight`` must broadcast to the caller's target shape: ``(N, C, H, W)`` per pixel and
    channel for sigmoid layouts, ``(N, H, W)`` per pixel for multi-class, ``(N,)`` / ``(N, K)``
    for classifiers. It is detached: weights are constants of the loss, not paths for gradients.
    """
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a tensor, got {type(weight).__name__}")
    try:
        weight = torch.broadcast_to(weight.detach(), prepared.target_shape)
    except RuntimeError:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not broadcast to the target shape "
            f"{tuple(prepared.target_shape)}"
        ) from None
    return weight.to(prepared.logits.dtype).reshape(prepared.target.shape)


def _predict(p: Prepared) -> Tensor:
    """Predicted labels in the working target layout and dtype."""
    if p.sigmoid:
        return (p.logits > 0).to(p.target.dtype)
    return p.logits.argmax(dim=1)


def predict_like(logits: Tensor, target: Tensor) -> Tensor:
    """The model's hard prediction in the layout, shape and dtype of ``target``.

    Sigmoid layouts: ``logit > 0`` (probability > 0.5) as 0/1 in the target's float dtype
    (the logits' dtype for non-float targets); multi-class / classification: arg-max, int64.
    """
    p = prepare(logits, target)
    return _predict(p).reshape(p.target_shape)


def correct_mask(logits: Tensor, target: Tensor) -> Tensor:
    """Bool mask, shape of ``target``: where the prediction equals the target (per channel for
    sigmoid layouts)."""
    p = prepare(logits, target)
    return (_predict(p) == p.target).reshape(p.target_shape)


def target_scores(logits: Tensor, target: Tensor) -> Tensor:
    """The score of the target label, shape of ``target``: what rises as the model agrees more.

    Multi-class: the target class's logit ``z_y``. Sigmoid layouts: the signed logit
    ``(2y - 1) * z`` (``+z`` where the target is 1, ``-z`` where it is 0), i.e. the logit of the
    target label when a sigmoid unit is written as the two-class softmax ``[-z/2, z/2]``, times 2.
    """
    p = prepare(logits, target)
    if p.sigmoid:
        scores = (2.0 * p.target - 1.0) * p.logits
    else:
        scores = p.logits.gather(1, p.target.unsqueeze(1)).squeeze(1)
    return scores.reshape(p.target_shape)


def cosine_to_target(logits: Tensor, target: Tensor) -> Tensor:
    """Cosine similarity between predicted probabilities and the one-hot target, shape of
    ``target``, values in [0, 1] (CosPGD's per-pixel weight).

    Multi-class: ``cos(softmax(z), onehot(y)) = p_y / ‖p‖₂``. Sigmoid layouts: each channel as
    the two-class distribution ``[1 - σ(z), σ(z)]`` against ``[1 - y, y]``, i.e.
    ``p_t / sqrt(σ² + (1 - σ)²)`` with ``p_t`` the probability of the target label.
    """
    p = prepare(logits, target)
    if p.sigmoid:
        prob = torch.sigmoid(p.logits)
        p_t = torch.where(p.target > 0.5, prob, 1.0 - prob)
        cos = p_t / torch.sqrt(prob.square() + (1.0 - prob).square())
    else:
        probs = torch.softmax(p.logits, dim=1)
        p_t = probs.gather(1, p.target.unsqueeze(1)).squeeze(1)
        cos = p_t / torch.linalg.vector_norm(probs, dim=1)
    return cos.reshape(p.target_shape)


def _overlap(p: Prepared) -> tuple[Tensor, Tensor]:
    """Per-image, per-class intersection and union counts ``(N, C)`` of prediction and target.

    Sigmoid layouts: every channel's positive pixels. Softmax: classes ``1..C-1`` (class 0 is
    taken as background, as in a binary mask's 0).
    """
    pred = _predict(p)
    if p.sigmoid:
        pred_b, tgt_b = pred.bool(), p.target.bool()
    else:
        classes = torch.arange(1, p.logits.shape[1], device=pred.device).view(1, -1, 1, 1)
        pred_b, tgt_b = pred.unsqueeze(1) == classes, p.target.unsqueeze(1) == classes
    inter = (pred_b & tgt_b).flatten(2).sum(dim=2)
    union = (pred_b | tgt_b).flatten(2).sum(dim=2)
    return inter, union


def iou_to_target(logits: Tensor, target: Tensor) -> Tensor:
    """Foreground IoU between the hard prediction and ``target``, per image, ``(N,)`` float64.

    Binary: ``|P ∩ T| / |P ∪ T|`` of the positive pixels (Ozbulak et al.'s measure). Multi-label:
    the mean over channels, multi-class the mean over foreground classes ``1..C-1``, counting
    only channels/classes present in the prediction or the target. An image where neither has
    any foreground (e.g. an empty target predicted empty) scores 1.
    """
    inter, union = _overlap(prepare(logits, target))
    present = union > 0
    per_class = inter.double() / union.clamp_min(1).double()
    n_present = present.sum(dim=1)
    mean = (per_class * present).sum(dim=1) / n_present.clamp_min(1)
    return torch.where(n_present > 0, mean, torch.ones_like(mean))


def pixel_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Fraction of pixels (pixel-channels for sigmoid layouts) predicted as ``target``, ``(N,)``
    float64."""
    p = prepare(logits, target)
    return (_predict(p) == p.target).flatten(1).double().mean(dim=1)
