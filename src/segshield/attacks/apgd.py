"""Auto-PGD: PGD with momentum and a step size that adapts per sample, in L-infinity and L2."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segshield.attacks.base import Attack, _rows
from segshield.attacks.layout import pixel_accuracy
from segshield.attacks.losses import LossFn
from segshield.attacks.pgd import PGD
from segshield.attacks.pgdl2 import PGDL2, _per_image

__all__ = ["APGD", "APGDL2", "SCHEDULES", "apgd_checkpoints", "sea_stages"]

SCHEDULES: tuple[str | None, ...] = (None, "sea")
"""Radius schedules: ``None`` (one run at ε) or ``"sea"`` (2ε → 1.5ε → ε, :func:`sea_stages`)."""

_SEA_RADII = (2.0, 1.5, 1.0)

TIE_RTOL = 3e-5
"""A loss counts as higher than ``L`` only above ``L + TIE_RTOL · |L|`` (~250 float32 ulps).
Smaller differences are rounding, which changes with the batch (kernels sum in other orders):
late iterates differ in a few pixels and their losses by an ulp or two, so exact comparisons
made ~10% of the images of the tiny test nets come out differently alone than in a batch
(none of 1280 with this margin); improvements this small do not matter to an attack."""


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j · steps)`` at which APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` while
    ``p_j <= 1``; repeated values (few steps) are dropped. Kept in hundredths, so the
    arithmetic is exact: ``apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]``.
    """
    out, prev, p = [0], 0, 22
    while p <= 100:
        w = -(-p * steps // 100)  # ceil without floats
        if w != out[-1]:
            out.append(w)
        prev, p = p, p + max(p - prev - 3, 6)
    return out


def sea_stages(steps: int) -> list[tuple[float, int]]:
    """SEA's progressive radius reduction: ``(radius / ε, steps)`` per stage, split 3:3:4.

    The first two stages get ``floor(0.3 · steps)`` each, the last the rest (at least 1).
    """
    first = 3 * steps // 10
    return list(zip(_SEA_RADII, (first, first, steps - 2 * first), strict=True))


def _check_fraction(value: float, owner: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{owner}: {what} must be a number in [0, 1], got {value!r}")
    return number


def _check_momentum(value: float, owner: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 < number <= 1.0:
        raise ValueError(
            f"{owner}: momentum is the weight of the new step, a number in (0, 1] "
            f"(1: no momentum; 0 would ignore the gradient), got {value!r}"
        )
    return number


def _higher(loss: Tensor, than: Tensor) -> Tensor:
    """``(N,)`` bool: ``loss`` above ``than`` by more than rounding (:data:`TIE_RTOL`)."""
    return loss > than + TIE_RTOL * than.abs()


def _rows_of(mask: Tensor, like: Tensor) -> Tensor:
    """``(N,)`` -> ``(N, 1, ..., 1)`` broadcastable against ``like``."""
    return mask.view(-1, *([1] * (like.ndim - 1)))


class APGD(PGD):
    """APGD, Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks" (Auto-PGD, Algorithm 1).

    Iterative, L-infinity: from the start ``x⁽⁰⁾`` (``clip_[0,1](x + U(-eps, eps))``, or ``x``
    when ``random_start=False``), with a step size ``η`` per sample starting at ``2·eps``::

        z   = Π(x⁽ᵏ⁾ + η · sign(∇L(x⁽ᵏ⁾)))
        x⁽ᵏ⁺¹⁾ = Π(x⁽ᵏ⁾ + α (z - x⁽ᵏ⁾) + (1 - α)(x⁽ᵏ⁾ - x⁽ᵏ⁻¹⁾))   (the first step: x⁽¹⁾ = z)

    ``Π``: projection to the ε-ball and [0, 1]; ``α`` = ``momentum``, the weight of the new
    step: ``α = 1`` is no momentum, smaller ``α`` weighs the previous step more (``α = 0``, which
    would ignore the gradient, is refused). At each checkpoint ``w_j`` (:func:`apgd_checkpoints`)
    a sample halves its ``η`` and restarts from its highest-loss point ``x_best`` (and that
    point's gradient) when fewer than ``rho · (w_j - w_{j-1})`` of the steps since the last
    checkpoint raised its loss (condition 1), or when its ``η`` was not halved at the last
    checkpoint and its best loss has not risen since (condition 2; also at ``w_1``, as the
    paper states it). "Higher" means by more than ``TIE_RTOL = 3e-5`` relative
    (:data:`TIE_RTOL`), so that sub-rounding differences, which change with the batch, decide
    nothing.

    Returned: per sample, NOT ``x_best`` but the most-fooled iterate ``x_adv``: of all iterates,
    ``x⁽⁰⁾`` included, the one with the lowest pixel accuracy of the hard prediction against
    ``targets`` (:func:`~segshield.attacks.layout.pixel_accuracy`; a classifier's is 0 or 1),
    equal accuracies going to the higher loss (by the same :data:`TIE_RTOL` rule), and the
    earlier iterate when that ties too. This is the "best adversarial point" of AutoAttack's APGD
    and of SEA's reference code: the loss only guides the search, and for SEA's masked losses
    (``masked_ce``, ``balanced_masked_ce``) it *falls* as pixels are fooled, since fooled pixels
    leave the sum, so the highest-loss iterate is often one where few pixels flipped. The
    accuracy comes from the logits of the forward pass that gives the iterate's loss and
    gradient: no extra pass. ``targets`` must therefore be in one of the layouts of
    :mod:`~segshield.attacks.layout`, whatever the loss.

    ``steps`` is the paper's ``N_iter``, the number of updates: ``steps + 1`` forward/backward
    passes (the loss and gradient at ``x⁽⁰⁾`` and after each update); the checkpoints are
    ``ceil(p_j · steps)`` updates.

    Options: ``steps`` (default 10), ``random_start`` (default True, as the paper),
    ``generator`` (as :class:`~segshield.attacks.pgd.PGD`: one ``torch.Generator`` or one per
    image, making an image's result independent of its batch), ``rho`` (default 0.75),
    ``momentum`` ``α`` (default 0.75), ``schedule``: ``None``, or ``"sea"`` for SEA's
    progressive radius reduction (Croce, Singh & Hein, 2024, "Towards Reliable Evaluation and
    Fast Training of Robust Semantic Segmentation Models"): three runs of ``3:3:4`` of the steps
    (:func:`sea_stages`) in the balls of radius ``2·eps``, ``1.5·eps`` and ``eps``, each from
    the previous run's ``x_adv`` projected onto its ball (the random start is drawn in the
    ``2·eps`` ball), and the ``x_adv`` of the last one returned - inside the ε-ball. Each run
    evaluates its start too, so a stage of ``s > 0`` updates costs ``s + 1`` passes (a stage of
    0 updates, e.g. the first two at ``steps < 4``, runs nothing): ``steps + 3`` passes for
    ``steps >= 4``.

    Per-sample budgets (``attack(x, y, eps=[...])``) run as one batch, every sample with its
    own ``η``, counters and ball; no host sync per step. Shapes and ranges: ``images``
    ``(N, C, H, W)`` float in [0, 1]; ``targets`` as the loss takes them; result same
    shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps``.
    """

    name: ClassVar[str] = "apgd"
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
        random_start: bool = True,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        rho: float = 0.75,
        momentum: float = 0.75,
        schedule: str | None = None,
        **params: Any,
    ) -> None:
        if params:  # PGD's alpha too: APGD adapts its own step size
            Attack.__init__(self, model, loss, eps, **params)  # the usual "unknown" ValueError
        super().__init__(
            model, loss, eps, steps=steps, random_start=random_start, generator=generator
        )
        owner = type(self).__name__
        self.rho = _check_fraction(rho, owner, "rho")
        self.momentum = _check_momentum(momentum, owner)
        if schedule not in SCHEDULES:
            raise ValueError(
                f"{owner}: schedule must be one of {list(SCHEDULES)}, got {schedule!r}"
            )
        self.schedule = schedule

    @property
    def alpha(self) -> float:
        """The initial step size ``2 · eps`` (each sample's then adapts)."""
        return self._alpha_for(self.eps)

    def _alpha_for(self, eps: float) -> float:
        return 2.0 * eps

    def attack_params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "steps": self.steps,
            "rho": self.rho,
            "momentum": self.momentum,
            "schedule": self.schedule,
            "random_start": self.random_start,
        }

    def _perturb_at(
        self, images: Tensor, targets: Tensor, eps: float | tuple[float, ...]
    ) -> Tensor:
        """Random start, then one APGD run per stage; ``eps``: one budget, or one per sample."""
        # One budget becomes N equal rows: the very operations per-sample budgets take.
        budgets = eps if isinstance(eps, tuple) else (eps,) * images.shape[0]
        stages = sea_stages(self.steps) if self.schedule == "sea" else [(1.0, self.steps)]
        first = stages[0][0]
        x = images
        if self.random_start:
            x = self._random_start(images, tuple(first * e for e in budgets))
        for index, (factor, steps) in enumerate(stages):
            radius = _rows([factor * e for e in budgets], images)
            if index > 0:  # the previous stage's most-fooled point, onto this (smaller) ball
                x = self._project(x, images, radius)
            if steps > 0:
                x = self._run(images, targets, x, steps, radius)
        return x.detach()

    def _run(
        self, images: Tensor, targets: Tensor, start: Tensor, steps: int, eps: Tensor
    ) -> Tensor:
        """One APGD run of ``steps`` updates (``steps + 1`` passes) in the balls ``eps``
        ``(N, 1, 1, 1)``; returns each sample's most-fooled iterate ``x_adv`` (lowest pixel
        accuracy, then higher loss). ``x_best`` (highest loss) only serves the restarts. Python
        ``if``s test only the step number (no host sync)."""
        intervals = dict(_intervals(apgd_checkpoints(steps)))
        eta = 2.0 * eps  # = _alpha_for, per sample
        x = x_prev = start.detach()
        loss, grad, logits = self._evaluate(x, targets)
        x_best, grad_best, loss_best = x, grad, loss
        x_adv, acc_adv, loss_adv = x, pixel_accuracy(logits, targets), loss
        loss_prev, best_at_check = loss, loss
        ups = torch.zeros_like(loss, dtype=torch.long)  # steps that raised the loss since w_j-1
        halved = torch.zeros_like(loss, dtype=torch.bool)  # η halved at the last checkpoint
        for k in range(1, steps + 1):
            z = self._step(x, images, grad, eta, eps)
            if k > 1:  # momentum from the second step on
                a = self.momentum
                z = self._project(x + a * (z - x) + (1.0 - a) * (x - x_prev), images, eps)
            x_prev, x = x, z
            loss, grad, logits = self._evaluate(x, targets)
            acc = pixel_accuracy(logits, targets)
            fooled = (acc < acc_adv) | ((acc == acc_adv) & _higher(loss, loss_adv))
            x_adv = torch.where(_rows_of(fooled, x), x, x_adv)
            acc_adv = torch.where(fooled, acc, acc_adv)
            loss_adv = torch.where(fooled, loss, loss_adv)
            ups = ups + _higher(loss, loss_prev)
            loss_prev = loss
            better = _higher(loss, loss_best)
            x_best = torch.where(_rows_of(better, x), x, x_best)
            grad_best = torch.where(_rows_of(better, x), grad, grad_best)
            loss_best = torch.where(better, loss, loss_best)
            if k not in intervals:
                continue
            halve = (ups < self.rho * intervals[k]) | (~halved & (loss_best <= best_at_check))
            rows = _rows_of(halve, x)
            eta = torch.where(rows, 0.5 * eta, eta)
            x = torch.where(rows, x_best, x)  # restart from the best point
            grad = torch.where(rows, grad_best, grad)
            loss_prev = torch.where(halve, loss_best, loss_prev)
            ups, halved, best_at_check = torch.zeros_like(ups), halve, loss_best
        return x_adv.detach()

    @staticmethod
    def _project(x: Tensor, images: Tensor, eps: Tensor) -> Tensor:
        """Onto the L-infinity balls ``eps`` ``(N, 1, 1, 1)`` around ``images``, and [0, 1]."""
        return torch.clamp(x, images - eps, images + eps).clamp_(0.0, 1.0)


def _intervals(checkpoints: list[int]) -> list[tuple[int, int]]:
    """``(w_j, w_j - w_{j-1})`` for every checkpoint after ``w_0 = 0``."""
    return [(w, w - prev) for prev, w in itertools.pairwise(checkpoints)]


class APGDL2(APGD, PGDL2):
    """APGD in an L2 ball, Croce & Hein, ICML 2020, "Reliable evaluation of adversarial
    robustness with an ensemble of diverse parameter-free attacks".

    Iterative, L2: :class:`APGD` with ``eps`` the radius of a Euclidean ball per image (over all
    ``C·H·W`` values, [0, 1] scale), the step ``z = Π(x + η · g / ‖g‖₂)`` (``η`` starting at
    ``2·eps``), the same momentum, checkpoints, restarts, ``schedule``, step count
    (``steps`` updates) and result (the most-fooled iterate), and
    :class:`~segshield.attacks.pgdl2.PGDL2`'s random start (a uniformly random direction times
    ``U(0, 1) · eps``). ``Π`` scales ``δ = x - x₀`` by ``min(1, eps / ‖δ‖₂)`` and clips to
    [0, 1].

    Options as :class:`APGD`. Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1];
    result same shape/dtype, in [0, 1], ``‖x_adv - x‖₂ <= eps`` per image.
    """

    name: ClassVar[str] = "apgdl2"
    norm: ClassVar[str] = "L2"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    @staticmethod
    def _project(x: Tensor, images: Tensor, eps: Tensor) -> Tensor:
        """Onto the L2 balls ``eps`` ``(N, 1, 1, 1)`` around ``images``, and [0, 1]."""
        delta = x - images
        norms = torch.linalg.vector_norm(delta.flatten(1), dim=1)
        # δ = 0 needs no shrinking (also for eps = 0, where 0 / 0 would be NaN)
        ratio = torch.where(norms > 0, norms.reciprocal() * eps.flatten(), 1.0)
        factor = torch.minimum(ratio, torch.ones_like(norms))
        return torch.clamp(images + delta * _per_image(factor, delta), min=0.0, max=1.0)
