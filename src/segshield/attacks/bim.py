"""Basic Iterative Method."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from segshield.attacks.base import Attack, _check_alpha, _check_steps
from segshield.attacks.losses import LossFn

__all__ = ["BIM"]


class BIM(Attack):
    """BIM / I-FGSM, Kurakin et al., 2017, "Adversarial Examples in the Physical World".

    Iterative, L-infinity: start at ``x``; ``steps`` times
    ``x <- clip_[0,1](Π_{‖·-x‖∞<=eps}(x + alpha * sign(∇_x L)))``.

    Options: ``steps`` (default 10), ``alpha`` step size (default ``eps / 4``, recomputed when
    the budget changes, so 10 steps can travel 2.5 ε: enough to reach any corner of the ball).

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` as the loss takes
    them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``. Deterministic.
    Per-sample budgets (``attack(x, y, eps=[...])``) run as one batch, each sample with its own
    ``eps`` and default ``alpha``.
    """

    name: ClassVar[str] = "bim"
    targeted: ClassVar[bool] = False
    iterative: ClassVar[bool] = True
    stacks_budgets: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn | str,
        eps: float,
        *,
        steps: int = 10,
        alpha: float | None = None,
        **params: Any,
    ) -> None:
        super().__init__(model, loss, eps, **params)
        self.steps = _check_steps(steps, type(self).__name__)
        self._alpha = _check_alpha(alpha, type(self).__name__)

    @property
    def alpha(self) -> float:
        """Step size: the value given, else ``eps / 4``."""
        return self._alpha_for(self.eps)

    def _alpha_for(self, eps: float) -> float:
        return self._alpha if self._alpha is not None else eps / 4.0

    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        return self._perturb_at(images, targets, self.eps)

    def _perturb_at(
        self, images: Tensor, targets: Tensor, eps: float | tuple[float, ...]
    ) -> Tensor:
        """``steps`` signed steps from ``images``; ``eps``: one budget, or one per sample."""
        alpha, budget = self._budget(eps, images)
        return self._iterate(images, targets, images, self.steps, alpha, budget)

    def attack_params(self) -> dict[str, Any]:
        return {"eps": self.eps, "steps": self.steps, "alpha": self.alpha, "random_start": False}
