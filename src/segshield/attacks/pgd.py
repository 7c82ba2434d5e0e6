"""Projected Gradient Descent with a random start."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segshield.attacks.base import Attack, StepLoss, _check_alpha, _check_steps
from segshield.attacks.losses import LossFn

__all__ = ["PGD"]


class PGD(Attack):
    """PGD, Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks".

    Iterative, L-infinity: start at ``clip_[0,1](x + U(-eps, eps))`` (or at ``x`` when
    ``random_start=False``, which makes it BIM); then ``steps`` times
    ``x <- clip_[0,1](Π_{‖·-x‖∞<=eps}(x + alpha * sign(∇_x L)))``.

    Options: ``steps`` (default 10), ``alpha`` step size (default ``eps / 4``, recomputed when
    the budget changes), ``random_start`` (default True), ``generator`` - the
    ``torch.Generator`` the start is drawn from (default: torch's global RNG; this class never
    seeds). With a generator on another device than the images, the noise is drawn on the
    generator's device and moved. The noise is drawn for the whole batch at once, so a batch
    does not equal its images attacked one by one unless ``random_start=False``.

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` as the loss takes
    them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``.
    """

    name: ClassVar[str] = "pgd"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn | str,
        eps: float,
        *,
        steps: int = 10,
        alpha: float | None = None,
        random_start: bool = True,
        generator: torch.Generator | None = None,
        **params: Any,
    ) -> None:
        super().__init__(model, loss, eps, **params)
        self.steps = _check_steps(steps, type(self).__name__)
        self._alpha = _check_alpha(alpha, type(self).__name__)
        owner = type(self).__name__
        if not isinstance(random_start, bool):
            raise ValueError(f"{owner}: random_start must be a bool, got {random_start!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{owner}: generator must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        self.random_start = random_start
        self.generator = generator

    @property
    def alpha(self) -> float:
        """Step size: the value given, else ``eps / 4``."""
        return self._alpha if self._alpha is not None else self.eps / 4.0

    def _noise_device(self, images: Tensor) -> torch.device:
        return images.device if self.generator is None else self.generator.device

    def _random_start(self, images: Tensor) -> Tensor:
        """``clip_[0,1](images + U(-eps, eps))``, same shape/dtype/device as ``images``.

        The draw is ``torch.empty(...).uniform_(-eps, eps)`` in the images' dtype, so with the
        global RNG it consumes and yields exactly what torchattacks' PGD draws.
        """
        device = self._noise_device(images)
        noise = torch.empty(images.shape, dtype=images.dtype, device=device)
        noise.uniform_(-self.eps, self.eps, generator=self.generator)
        return (images + noise.to(images.device)).clamp_(0.0, 1.0)

    def _loss_schedule(self) -> StepLoss | None:
        """The per-step objective for :meth:`_iterate`; ``None``: :attr:`loss` at every step."""
        return None

    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        start = self._random_start(images) if self.random_start else images
        return self._iterate(
            images,
            targets,
            start,
            self.steps,
            self.alpha,
            self.eps,
            loss_at_step=self._loss_schedule(),
        )

    def attack_params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "steps": self.steps,
            "alpha": self.alpha,
            "random_start": self.random_start,
        }
