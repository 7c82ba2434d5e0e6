"""Projected Gradient Descent with a random start."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segshield.attacks.base import Attack, StepLoss, _check_alpha, _check_steps
from segshield.attacks.losses import LossFn

Fill = Callable[[Tensor, "torch.Generator | None", float], object]
"""``fill(tensor, generator, eps)``: fill ``tensor`` in place from ``generator`` (budget eps)."""

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

    Per-sample budgets (``attack(x, y, eps=[...])``, ``sweep(..., stacked=True)``) run as one
    batch: sample ``i`` starts from ``U(-eps[i], eps[i])`` drawn from ``generator[i]`` and steps
    with its own ``alpha``, exactly as ``self.with_eps(eps[i])`` would on that image alone (up
    to the model's batch invariance). With one generator and unequal budgets the starts are
    drawn sample after sample.

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` as the loss takes
    them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``.
    """

    name: ClassVar[str] = "pgd"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False
    stacks_budgets: ClassVar[bool] = True

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
        return self._alpha_for(self.eps)

    def _alpha_for(self, eps: float) -> float:
        return self._alpha if self._alpha is not None else eps / 4.0

    def _noise_device(self, images: Tensor) -> torch.device:
        gen = self.generator
        if gen is None:
            return images.device
        return gen[0].device if isinstance(gen, tuple) and gen else gen.device  # type: ignore[union-attr]

    def _draw(
        self, images: Tensor, shape: tuple[int, ...], fill: Fill, eps: float | tuple[float, ...]
    ) -> Tensor:
        """A tensor of ``shape`` (leading dimension: the batch) in the images' dtype on the
        noise device, filled in place by ``fill(tensor, generator, eps)``: image by image from
        its own generator (and budget) when :attr:`generator` is a sequence, else at once from
        the one generator (sample after sample when the per-sample budgets differ)."""
        out = torch.empty(shape, dtype=images.dtype, device=self._noise_device(images))
        gens = self.generator
        per_sample = eps if isinstance(eps, tuple) else (eps,) * shape[0]
        if isinstance(gens, tuple):
            if len(gens) != shape[0]:
                raise ValueError(
                    f"{type(self).__name__}: {len(gens)} generators for a batch of {shape[0]}"
                )
            for row, gen, e in zip(out, gens, per_sample, strict=True):
                fill(row, gen, e)
        elif len(set(per_sample)) <= 1:
            fill(out, gens, per_sample[0] if per_sample else 0.0)
        else:
            for row, e in zip(out, per_sample, strict=True):
                fill(row, gens, e)
        return out

    def _random_start(self, images: Tensor, eps: float | tuple[float, ...]) -> Tensor:
        """``clip_[0,1](images + U(-eps, eps))``, same shape/dtype/device as ``images``;
        ``eps``: one budget or one per sample.

        The draw is ``torch.empty(...).uniform_(-eps, eps)`` in the images' dtype, so with the
        global RNG it consumes and yields exactly what torchattacks' PGD draws.
        """
        noise = self._draw(
            images, tuple(images.shape), lambda t, g, e: t.uniform_(-e, e, generator=g), eps
        )
        return (images + noise.to(images.device)).clamp_(0.0, 1.0)

    def _loss_schedule(self) -> StepLoss | None:
        """The per-step objective for :meth:`_iterate`; ``None``: :attr:`loss` at every step."""
        return None

    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        return self._perturb_at(images, targets, self.eps)

    def _perturb_at(
        self, images: Tensor, targets: Tensor, eps: float | tuple[float, ...]
    ) -> Tensor:
        """Random start, then ``steps`` steps; ``eps``: one budget, or one per sample."""
        alpha, budget = self._budget(eps, images)
        start = self._random_start(images, eps) if self.random_start else images
        return self._iterate(
            images, targets, start, self.steps, alpha, budget, loss_at_step=self._loss_schedule()
        )

    def attack_params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "steps": self.steps,
            "alpha": self.alpha,
            "random_start": self.random_start,
        }
