"""Dense Adversary Generation, bounded to an L-infinity ball."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from segshield.attacks.base import Budget
from segshield.attacks.bim import BIM
from segshield.attacks.layout import Prepared, prepare

__all__ = ["DAG"]


class DAG(BIM):
    """DAG, Xie et al., ICCV 2017, "Adversarial Examples for Semantic Segmentation and Object
    Detection" (Dense Adversary Generation), untargeted and bounded.

    Iterative, L-infinity. Every pixel gets an adversarial label ``l'`` once, from the clean
    image: the flipped label for binary / multi-label (sigmoid) outputs, and the runner-up class
    (highest clean logit other than the true one) for multi-class outputs and classifiers. Each
    step only the pixels still predicted as their true label ``l`` (the active set ``T``)
    contribute::

        g = ∇_x Σ_{j ∈ T} (f_{l'_j}(x)_j - f_{l_j}(x)_j)
        x <- clip_[0,1](Π_{‖·-x‖∞<=eps}(x + alpha · g / ‖g‖∞))

    (for a sigmoid channel ``f_{l'} - f_l`` is ``±z``: ``+z`` where ``l = 0``, ``-z`` where
    ``l = 1``). The normalised step is the paper's ``r = γ · g / ‖g‖∞`` (``‖·‖∞`` per image),
    with ``alpha`` playing γ; the projection to the ε-ball is added for comparability with the
    other attacks (the paper's DAG is unbounded). An image whose active set is empty stops
    moving (the paper's stopping rule); ``steps`` caps the iterations (the paper: 200).

    The update ascends DAG's own logit-difference objective: ``loss`` is accepted for the
    registry interface (and is what an audit scores with) but does not steer the attack.

    Options: ``steps`` (default 10), ``alpha`` step size γ (default ``eps / 4``, recomputed when
    the budget changes; the paper's γ = 0.5 on a 0-255 scale is about 0.002 here).

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` the true labels
    (``(N, 1, H, W)`` / ``(N, C, H, W)`` {0, 1}, ``(N, H, W)`` or ``(N,)`` class indices);
    result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``. Deterministic.
    """

    name: ClassVar[str] = "dag"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    @staticmethod
    def adversarial_labels(p: Prepared) -> Tensor:
        """``l'`` in the working layout of ``p``: ``1 - y`` (sigmoid) or the runner-up class."""
        if p.sigmoid:
            return 1.0 - p.target
        others = p.logits.detach().scatter(1, p.target.unsqueeze(1), float("-inf"))
        return others.argmax(dim=1)

    @staticmethod
    def objective(p: Prepared, adversarial: Tensor) -> Tensor:
        """``Σ_{j ∈ T} (f_{l'} - f_l)`` per image, ``(N,)``; ``T``: pixels predicted correctly."""
        if p.sigmoid:
            active = (p.logits.detach() > 0).to(p.target.dtype) == p.target
            margin = (1.0 - 2.0 * p.target) * p.logits
        else:
            active = p.logits.detach().argmax(dim=1) == p.target
            f_adv = p.logits.gather(1, adversarial.unsqueeze(1)).squeeze(1)
            f_true = p.logits.gather(1, p.target.unsqueeze(1)).squeeze(1)
            margin = f_adv - f_true
        return (margin * active).flatten(1).sum(dim=1)

    @staticmethod
    def _step(x: Tensor, images: Tensor, grad: Tensor, alpha: Budget, eps: Budget) -> Tensor:
        """``x + alpha · g / ‖g‖∞`` (per image; no move where ``g = 0``), projected.
        ``alpha`` / ``eps``: floats or ``(N, 1, 1, 1)`` per sample."""
        scale = grad.flatten(1).abs().amax(dim=1).view(-1, *([1] * (grad.ndim - 1)))
        direction = torch.where(scale > 0, grad / scale.clamp_min(torch.finfo(grad.dtype).tiny), 0)
        x = x + alpha * direction
        x = torch.clamp(x, images - eps, images + eps)
        return x.clamp_(0.0, 1.0)

    def _perturb_at(
        self, images: Tensor, targets: Tensor, eps: float | tuple[float, ...]
    ) -> Tensor:
        labels: list[Tensor] = []  # l', fixed from the first (clean) forward pass

        def dag_loss(logits: Tensor, targets: Tensor, step: int, steps: int) -> Tensor:
            p = prepare(logits, targets)
            if not labels:
                labels.append(self.adversarial_labels(p))
            return self.objective(p, labels[0])

        alpha, budget = self._budget(eps, images)
        return self._iterate(
            images, targets, images, self.steps, alpha, budget, loss_at_step=dag_loss
        )
