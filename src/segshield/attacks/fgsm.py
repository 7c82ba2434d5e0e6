"""Fast Gradient Sign Method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from segshield.attacks.base import Attack, _check_eps

__all__ = ["FGSM"]


class FGSM(Attack):
    """FGSM, Goodfellow et al., 2015, "Explaining and Harnessing Adversarial Examples".

    Single step, L-infinity: ``x_adv = clip_[0,1](x + eps * sign(∇_x L(f(x), y)))``.

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` as the loss takes
    them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``. No options.
    :meth:`sweep` computes the gradient once for all budgets.
    """

    name: ClassVar[str] = "fgsm"
    targeted: ClassVar[bool] = False
    iterative: ClassVar[bool] = False
    stacks_budgets: ClassVar[bool] = True

    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        return self._perturb_at(images, targets, self.eps)

    def _perturb_at(
        self, images: Tensor, targets: Tensor, eps: float | tuple[float, ...]
    ) -> Tensor:
        # One step of the shared loop from x with step size eps: exactly FGSM.
        alpha, budget = self._budget(eps, images)
        return self._iterate(images, targets, images, steps=1, alpha=alpha, eps=budget)

    def sweep(
        self,
        images: Tensor,
        targets: Tensor,
        epsilons: Sequence[float],
        *,
        stacked: bool = False,
    ) -> list[Tensor]:
        """FGSM at every ε in ``epsilons`` from ONE forward/backward pass (the sign is shared).

        Each result equals ``self.with_eps(eps)(images, targets)`` exactly. ``stacked`` is
        accepted for the common interface: sharing the gradient already beats stacking.
        """
        budgets = [_check_eps(eps) for eps in epsilons]
        self._check_images(images)
        images = images.detach()
        if not any(eps > 0.0 for eps in budgets):
            return [images.clone() for _ in budgets]
        with torch.enable_grad(), self._finite_checked():
            grad = self._gradient(images, targets)
        return [
            self._step(images, images, grad, eps, eps).detach() if eps > 0.0 else images.clone()
            for eps in budgets
        ]

    def attack_params(self) -> dict[str, Any]:
        return {"eps": self.eps, "steps": 1, "alpha": self.eps, "random_start": False}
