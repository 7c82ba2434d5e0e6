"""Projected Gradient Descent in an L2 ball."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from segshield.attacks.base import Budget, _rows
from segshield.attacks.pgd import PGD

__all__ = ["PGDL2"]

_DIV_EPS = 1e-10  # added to gradient norms before dividing (torchattacks' eps_for_division)


def _per_image(values: Tensor, like: Tensor) -> Tensor:
    """``(N,)`` -> ``(N, 1, ..., 1)`` broadcastable against ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def _direction_radius(row: Tensor, gen: torch.Generator | None, eps: float) -> None:
    """One image's start from its own generator: C·H·W normal values, then one U(0, 1)."""
    row[:-1].normal_(generator=gen)
    row[-1:].uniform_(0.0, 1.0, generator=gen)


class PGDL2(PGD):
    """PGD in an L2 ball, Madry et al., 2018, "Towards Deep Learning Models Resistant to
    Adversarial Attacks".

    Iterative, L2: ``eps`` is the radius of a Euclidean ball per image (over all ``C·H·W`` values,
    [0, 1] scale; an L-infinity budget ε corresponds to at most ``ε·sqrt(C·H·W)``). Start at
    ``x + δ₀`` with ``δ₀`` a uniformly random direction times ``U(0, 1) · eps`` (clipped to
    [0, 1]; or at ``x`` when ``random_start=False``); then ``steps`` times::

        x <- x + alpha · g / (‖g‖₂ + 1e-10)
        x <- clip_[0,1](x₀ + δ · min(1, eps / ‖δ‖₂)),   δ = x - x₀

    The steps and the draw of the start follow torchattacks' ``PGDL2`` operation by operation,
    so with the global RNG seeded alike both give the same points (see the tests).

    Options: ``steps`` (default 10), ``alpha`` L2 step length (default ``2.5 · eps / steps``,
    the step rule of Madry et al.'s robustness library; torchattacks' default is a fixed 0.2 for
    its ``eps = 1.0``, i.e. ``2 · eps / steps``), ``random_start`` (default True), ``generator``
    (``torch.Generator`` for the start; default the global RNG).

    Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1]; ``targets`` as the loss takes
    them; result same shape/dtype, in [0, 1], ``‖x_adv - x‖₂ <= eps`` per image (so also
    ``‖x_adv - x‖∞ <= eps``).
    """

    name: ClassVar[str] = "pgdl2"
    norm: ClassVar[str] = "L2"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    @property
    def alpha(self) -> float:
        """Step length: the value given, else ``2.5 * eps / steps``."""
        return self._alpha_for(self.eps)

    def _alpha_for(self, eps: float) -> float:
        return self._alpha if self._alpha is not None else 2.5 * eps / self.steps

    def _random_start(self, images: Tensor, eps: float | tuple[float, ...]) -> Tensor:
        """``clip_[0,1](x + u · eps · d / ‖d‖₂)``, ``d ~ N(0, I)``, ``u ~ U(0, 1)`` per image;
        ``eps``: one budget or one per sample (with one generator the draw does not depend on
        the budgets: they only scale it)."""
        if isinstance(self.generator, tuple):  # one generator per image: direction, radius
            shape = (images.shape[0], images[0].numel() + 1)
            flat = self._draw(images, shape, _direction_radius, eps)
            delta = flat[:, :-1].reshape(images.shape)
            radius = _per_image(flat[:, -1], delta)
            norms = _per_image(torch.linalg.vector_norm(delta.flatten(1), dim=1), delta)
        else:
            device = self._noise_device(images)
            delta = torch.empty(images.shape, dtype=images.dtype, device=device)
            delta.normal_(generator=self.generator)
            norms = _per_image(torch.linalg.vector_norm(delta.flatten(1), dim=1), delta)
            radius = torch.zeros_like(norms).uniform_(0.0, 1.0, generator=self.generator)
        scale = _rows(eps, delta) if isinstance(eps, tuple) else eps
        delta = delta * (radius / norms * scale)
        return torch.clamp(images + delta.to(images.device), min=0.0, max=1.0)

    @staticmethod
    def _step(x: Tensor, images: Tensor, grad: Tensor, alpha: Budget, eps: Budget) -> Tensor:
        """Normalised-gradient step of length ``alpha``, projected to the L2 ball and [0, 1].
        ``alpha`` / ``eps``: floats or ``(N, 1, 1, 1)`` per sample."""
        grad_norms = torch.linalg.vector_norm(grad.flatten(1), dim=1) + _DIV_EPS
        x = x + alpha * (grad / _per_image(grad_norms, grad))
        delta = x - images
        delta_norms = torch.linalg.vector_norm(delta.flatten(1), dim=1)
        radius = eps.flatten() if isinstance(eps, Tensor) else eps
        # eps / ‖δ‖ as a scalar's ``eps / t`` computes it (reciprocal, then multiply), so
        # per-sample budgets give the very same bits; δ = 0 needs no shrinking (also for
        # eps = 0, where 0 / 0 would be NaN)
        ratio = torch.where(delta_norms > 0, delta_norms.reciprocal() * radius, 1.0)
        factor = torch.minimum(ratio, torch.ones_like(delta_norms))
        delta = delta * _per_image(factor, delta)
        return torch.clamp(images + delta, min=0.0, max=1.0)
