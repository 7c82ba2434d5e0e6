"""CosPGD: PGD whose per-pixel loss is scaled by the prediction's agreement with the target."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from segshield.attacks.base import StepLoss
from segshield.attacks.layout import cosine_to_target
from segshield.attacks.pgd import PGD
from segshield.attacks.segpgd import _require_weight

__all__ = ["CosPGD"]


class CosPGD(PGD):
    """CosPGD, Agnihotri, Jung & Keuper, ICML 2024, "CosPGD: an efficient white-box adversarial
    attack for pixel-wise prediction tasks".

    Iterative, L-infinity: PGD (random start, signed steps, projection to the ε-ball and [0, 1])
    whose per-pixel loss is weighted, at every step, by the cosine similarity between the
    predicted distribution and the one-hot target::

        L_cos = 1 / (H W) · Σ_j cos(ψ(f(x_adv))_j, onehot(y_j)) · L_j

    so pixels the model still gets right (cos near 1) dominate and pixels already fooled fade
    out. ``ψ`` is softmax for multi-class outputs; a binary / multi-label (sigmoid) channel is
    the two-class distribution ``[1 - σ, σ]`` (see
    :func:`~segshield.attacks.layout.cosine_to_target`). The weights are constants of each step
    (detached, as in the reference code). ``L`` is the attack's loss called with ``weight=``, so
    a custom loss must accept it.

    Options as :class:`~segshield.attacks.pgd.PGD`: ``steps`` (default 10), ``alpha`` (default
    ``eps / 4``), ``random_start`` (default True), ``generator``.

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` the true labels
    as the loss takes them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``.
    """

    name: ClassVar[str] = "cospgd"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # PGD's options (steps, alpha, random_start, generator); param_names() reads them there.
        super().__init__(*args, **kwargs)
        _require_weight(self)

    def _loss_schedule(self) -> StepLoss:
        return self._cospgd_loss

    def _cospgd_loss(self, logits: Tensor, targets: Tensor, step: int, steps: int) -> Tensor:
        return self.loss(logits, targets, weight=cosine_to_target(logits.detach(), targets))
