"""SegPGD: PGD that shifts its weight from correctly to wrongly classified pixels."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from segshield.attacks.base import StepLoss
from segshield.attacks.layout import correct_mask
from segshield.attacks.losses import accepts_weight
from segshield.attacks.pgd import PGD

__all__ = ["SegPGD"]


class SegPGD(PGD):
    """SegPGD, Gu et al., ECCV 2022, "SegPGD: An Effective and Efficient Adversarial Attack for
    Evaluating and Boosting Segmentation Robustness".

    Iterative, L-infinity: PGD (random start, signed steps, projection to the ε-ball and [0, 1])
    whose objective at step ``t = 1..T`` splits the pixels by the *current* prediction::

        L_t = (1 - λ_t) / (H W) · Σ_{correct} L_j  +  λ_t / (H W) · Σ_{wrong} L_j,
        λ_t = (t - 1) / (2 T)

    Early steps push the still-correct pixels over the boundary; later ones also keep the already
    fooled ones fooled (λ grows towards 1/2). ``L`` is the attack's loss called with the per-pixel
    ``weight=`` ``(1 - λ_t)`` / ``λ_t`` (see :mod:`segshield.attacks.losses`; for Dice the
    weights enter its sums), so a custom loss must accept ``weight``. "Correct" is per pixel and
    channel for binary / multi-label (sigmoid) outputs, per pixel for multi-class, per image for
    classifiers.

    Options as :class:`~segshield.attacks.pgd.PGD`: ``steps`` (default 10), ``alpha`` (default
    ``eps / 4``), ``random_start`` (default True, as in the paper's Algorithm 1), ``generator``.

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` the true labels
    as the loss takes them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``.
    """

    name: ClassVar[str] = "segpgd"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # PGD's options (steps, alpha, random_start, generator); param_names() reads them there.
        super().__init__(*args, **kwargs)
        _require_weight(self)

    @staticmethod
    def weight_at_step(correct: Tensor, step: int, steps: int, dtype: torch.dtype) -> Tensor:
        """Per-pixel weights of step ``step`` (0-based, so ``λ = step / (2 steps)``):
        ``1 - λ`` where ``correct``, ``λ`` elsewhere; shape of ``correct``."""
        lam = step / (2.0 * steps)
        return correct.to(dtype) * (1.0 - lam) + (~correct).to(dtype) * lam

    def _loss_schedule(self) -> StepLoss:
        return self._segpgd_loss

    def _segpgd_loss(self, logits: Tensor, targets: Tensor, step: int, steps: int) -> Tensor:
        correct = correct_mask(logits.detach(), targets)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        return self.loss(logits, targets, weight=self.weight_at_step(correct, step, steps, dtype))


def _require_weight(attack: PGD) -> None:
    if not accepts_weight(attack.loss):
        raise ValueError(
            f"{attack.name}: the loss must accept a per-pixel weight= keyword "
            f"(the built-in losses do), got {getattr(attack.loss, '__name__', attack.loss)!r}"
        )
