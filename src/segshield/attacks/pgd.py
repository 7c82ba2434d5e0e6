"""Projected Gradient Descent with a random start."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    seeds), or a sequence of generators, one per image of the batch: image ``i``'s start is
    drawn from ``generator[i]`` alone, so an image's result does not depend on the batch it is
    in (the audit seeds one per image). With a generator on another device than the images,
    the noise is drawn on the generator's device and moved. With one generator the noise is
    drawn for the whole batch at once, so a batch does not equal its images attacked one by
    one unless ``random_start=False``.

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
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(model, loss, eps, **params)
        self.steps = _check_steps(steps, type(self).__name__)
        self._alpha = _check_alpha(alpha, type(self).__name__)
        owner = type(self).__name__
        if not isinstance(random_start, bool):
            raise ValueError(f"{owner}: random_start must be a bool, got {random_start!r}")
        if isinstance(generator, Sequence) and not isinstance(generator, str | bytes):
            generator = tuple(generator)
            bad = [type(g).__name__ for g in generator if not isinstance(g, torch.Generator)]
        else:
            bad = [] if generator is None or isinstance(generator, torch.Generator) else ["x"]
        if bad:
            raise TypeError(
                f"{owner}: generator must be a torch.Generator, a sequence of them (one per "
                f"image) or None, got {type(generator).__name__}"
            )
        self.random_start = random_start
        self.generator = generator

    @property
    def alpha(self) -> float:
        """Step size: the value given, else ``eps / 4``."""
        return self._alpha if self._alpha is not None else self.eps / 4.0

    def _noise_device(self, images: Tensor) -> torch.device:
        gen = self.generator
        if gen is None:
            return images.device
        return gen[0].device if isinstance(gen, tuple) and gen else gen.device  # type: ignore[union-attr]

    def _draw(
        self,
        images: Tensor,
        shape: tuple[int, ...],
        fill: Callable[[Tensor, torch.Generator | None], object],
    ) -> Tensor:
        """A tensor of ``shape`` (leading dimension: the batch) in the images' dtype on the
        noise device, filled in place by ``fill(tensor, generator)``: at once from the one
        generator, or image by image from its own when :attr:`generator` is a sequence."""
        out = torch.empty(shape, dtype=images.dtype, device=self._noise_device(images))
        gens = self.generator
        if isinstance(gens, tuple):
            if len(gens) != shape[0]:
                raise ValueError(
                    f"{type(self).__name__}: {len(gens)} generators for a batch of {shape[0]}"
                )
            for row, gen in zip(out, gens, strict=True):
                fill(row, gen)
        else:
            fill(out, gens)
        return out

    def _random_start(self, images: Tensor) -> Tensor:
        """``clip_[0,1](images + U(-eps, eps))``, same shape/dtype/device as ``images``.

        The draw is ``torch.empty(...).uniform_(-eps, eps)`` in the images' dtype, so with the
        global RNG it consumes and yields exactly what torchattacks' PGD draws.
        """
        noise = self._draw(
            images, tuple(images.shape), lambda t, g: t.uniform_(-self.eps, self.eps, generator=g)
        )
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
