"""The attack base class: input validation and the one gradient-step loop all attacks share.

Conventions for every attack:

* ``images``: ``(N, C, H, W)`` floating point, values in [0, 1];
* ``targets``: what the loss takes - ``(N, 1, H, W)`` {0, 1} for binary models, ``(N, C, H, W)``
  {0, 1} for multi-label ones, ``(N, H, W)`` class indices for multi-class ones, ``(N,)`` class
  indices for classifiers (see :mod:`segshield.attacks.layout`). They are the *true* labels,
  except for targeted attacks (``targeted = True``, e.g. ASMA), where they are the labels to
  reach;
* the result has the dtype, shape and device of ``images``, lies in [0, 1] and within the ball
  of radius ``eps`` around ``images`` in the attack's ``norm`` (L-infinity, or per-image L2 for
  ``norm == "L2"``), and is detached;
* ``attack(images, targets, eps=[...])`` gives each sample its own budget (and the step size
  that budget gives): several budgets stacked in one batch, as ``sweep(..., stacked=True)``
  does. NaN/Inf in the logits or input gradients raise ``ModelOutputError`` at the end of the
  call (checked on the device; no host sync per step).

Attacks take gradients with respect to the *input only* (``torch.autograd.grad``), so parameter
``.grad`` fields are never touched, and they leave the model's train/eval mode alone: the caller
puts the model in eval mode (BatchNorm in train mode would couple the images of a batch).
They do no I/O and no seeding; random starts draw from an optional ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segshield.attacks.finite import FiniteFlags
from segshield.attacks.layout import targets_checked_once
from segshield.attacks.losses import LossFn, get_loss
from segshield.errors import ModelOutputError

__all__ = ["Attack", "Budget", "StepLoss"]

Budget = float | Tensor
"""A budget or step size for the step loop: one float for the whole batch, or an
``(N, 1, ..., 1)`` tensor, one value per sample, broadcasting against ``(N, C, H, W)``."""

StepLoss = Callable[[Tensor, Tensor, int, int], Tensor]
"""``loss_at_step(logits, targets, step, steps) -> (N,)``: the objective of step ``step``
(0-based) of ``steps``; see :meth:`Attack._iterate`."""


def _check_eps(eps: float, what: str = "eps") -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number >= 0, got {eps!r}") from None
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{what} must be a finite number >= 0, got {eps!r}")
    return value


def _rows(values: Sequence[float], like: Tensor) -> Tensor:
    """``values`` (one per sample) as an ``(N, 1, ..., 1)`` tensor in ``like``'s dtype and device.

    Each Python float is rounded to the dtype once, as a scalar operand is, so a step with equal
    per-sample values computes exactly what the scalar step does (float32 / float64).
    """
    shape = (-1, *([1] * (like.ndim - 1)))
    return torch.tensor(list(values), dtype=like.dtype).view(shape).to(like.device)


class Attack(ABC):
    """Base class of white-box attacks on segmentation (and classification) models.

    Args:
        model: maps ``(N, C, H, W)`` images to ``(N, K, H, W)`` (or ``(N, K)``) logits; used as is
            (mode kept). Wrap models returning tuples/dicts in
            :class:`~segshield.attacks.outputs.SelectOutput`.
        loss: per-sample loss ``loss(logits, targets) -> (N,)`` to *increase*, or a loss name
            for :func:`segshield.attacks.losses.get_loss`.
        eps: budget in image units ([0, 1] scale) in the attack's ``norm``, ``>= 0``; ``0``
            returns a copy of the input.
        **params: attack-specific options (see the subclass); unknown names raise ``ValueError``.
    """

    name: ClassVar[str]
    norm: ClassVar[str] = "Linf"
    """What ``eps`` bounds: "Linf" (max abs pixel change) or "L2" (per-image Euclidean norm)."""
    iterative: ClassVar[bool]
    targeted: ClassVar[bool] = False
    """True when ``targets`` are the labels to *reach* (ASMA), not the true labels to leave."""
    stacks_budgets: ClassVar[bool] = False
    """True when the step loop takes one budget per sample, so samples at different budgets
    run as ONE batch (``attack(x, y, eps=[...])``, ``sweep(..., stacked=True)``); otherwise
    per-sample budgets are grouped and each group runs on its own."""

    def __init__(self, model: nn.Module, loss: LossFn | str, eps: float, **params: Any) -> None:
        if params:
            raise ValueError(
                f"{type(self).__name__} got unknown parameter(s) {sorted(params)}; "
                f"valid parameters: {self.param_names() or 'none'}"
            )
        if not callable(model):
            raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
        self.model = model
        self.loss: LossFn = get_loss(loss) if isinstance(loss, str) else loss
        self.eps = _check_eps(eps)
        self._finite: FiniteFlags | None = None

    # ----------------------------------------------------------------------------- public API

    def __call__(
        self, images: Tensor, targets: Tensor, eps: Sequence[float] | None = None
    ) -> Tensor:
        """Return adversarial images: same shape/dtype/device as ``images``, detached.

        ``eps``: optional budgets, one per sample (``N`` values), replacing :attr:`eps` for this
        call: sample ``i`` stays in the ball of radius ``eps[i]`` and takes the step size that
        budget gives (e.g. BIM's ``eps[i] / 4``), exactly as ``self.with_eps(eps[i])`` would.
        Attacks with :attr:`stacks_budgets` run them all as one batch; the others run one batch
        per distinct budget. A sample with budget 0 comes back unchanged.

        NaN or Inf in the logits or the input gradient raise :class:`ModelOutputError` once the
        batch is done: the check is kept on the device and read once per call, not per step.
        """
        self._check_images(images)
        budgets = None if eps is None else self._check_budgets(eps, images)
        if (self.eps if budgets is None else max(budgets, default=0.0)) == 0.0:
            # Empty budget: nothing can move, so skip the model (and any random draw) entirely.
            return images.detach().clone()
        x = images.detach()
        with torch.enable_grad(), self._finite_checked():  # caller may be inside no_grad()
            if budgets is None:
                adv = self._perturb(x, targets)
            else:
                adv = self._perturb_at(x, targets, budgets)
        return adv.detach()

    def sweep(
        self,
        images: Tensor,
        targets: Tensor,
        epsilons: Sequence[float],
        *,
        stacked: bool = False,
    ) -> list[Tensor]:
        """Attack once per budget in ``epsilons``; returns one adversarial batch per ε, in order.

        The default builds one attack per ε with :meth:`with_eps`. ``stacked=True`` instead runs
        the ``K`` budgets as ONE batch of ``K·N`` samples (sample ``k·N + i``: image ``i`` at
        ``epsilons[k]``; a per-sample generator sequence must then hold ``K·N`` generators, in
        that order); for deterministic attacks that equals the default up to the model's batch
        invariance. Single-step attacks override it to share the gradient computation. Every ε
        is validated before any attack runs.
        """
        budgets = [_check_eps(eps) for eps in epsilons]
        if not stacked or not budgets:
            return [self.with_eps(eps)(images, targets) for eps in budgets]
        self._check_images(images)
        n, k = images.shape[0], len(budgets)
        x = images.detach().repeat(k, *([1] * (images.ndim - 1)))
        y = targets.repeat(k, *([1] * (targets.ndim - 1)))
        adv = self(x, y, eps=[e for e in budgets for _ in range(n)])
        return list(adv.split(n)) if n else [adv.clone() for _ in budgets]

    def with_eps(self, eps: float) -> Attack:
        """A shallow copy of this attack (same model, loss, options, generator) with budget ``eps``.

        Options derived from ``eps`` (e.g. a default step size) follow the new budget.
        """
        clone = copy.copy(self)
        clone.eps = _check_eps(eps)
        return clone

    def attack_params(self) -> dict[str, Any]:
        """JSON-serialisable parameters for reports: eps, steps, alpha, random_start."""
        return {"eps": self.eps}

    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the attack-specific constructor options, e.g. ``["steps", "alpha"]``."""
        # The nearest constructor in the MRO that declares keyword-only options: subclasses that
        # only add checks (``def __init__(self, *args, **kwargs)``) inherit their parent's.
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            names = [
                p.name
                for p in inspect.signature(klass.__init__).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY
            ]
            if names:
                return names
        return []

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.attack_params().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        """Compute the adversarial batch; ``images`` is validated, detached, ``eps > 0``."""

    def _perturb_at(self, images: Tensor, targets: Tensor, eps: tuple[float, ...]) -> Tensor:
        """The adversarial batch with sample ``i`` at budget ``eps[i]`` (``N`` values, some > 0).

        This default runs one :meth:`with_eps` copy per distinct budget on that budget's samples
        (zero budgets are copied). Attacks whose step loop takes per-sample budgets set
        :attr:`stacks_budgets` and override it to run every sample in one batch. Attacks with a
        per-image generator sequence must override it (the groups would need their own).
        """
        out = images.clone()
        for value in sorted(set(eps) - {0.0}):
            index = torch.tensor([i for i, e in enumerate(eps) if e == value], device=out.device)
            out[index] = self.with_eps(value)._perturb(images[index], targets[index]).to(out)
        return out

    def _alpha_for(self, eps: float) -> float:
        """The step size a budget gives: ``eps`` itself here (FGSM); iterative attacks override."""
        return eps

    def _budget(self, eps: float | tuple[float, ...], like: Tensor) -> tuple[Budget, Budget]:
        """``(alpha, eps)`` for :meth:`_iterate`: floats for one budget, ``(N, 1, ..., 1)``
        tensors for per-sample ones, each sample's alpha following its own budget."""
        if isinstance(eps, tuple):
            return _rows([self._alpha_for(e) for e in eps], like), _rows(eps, like)
        return self._alpha_for(eps), eps

    @contextlib.contextmanager
    def _finite_checked(self) -> Iterator[None]:
        """Collect the NaN/Inf flags of one call on the device; raise, once, at the end.

        Also checks the targets' values once for the whole call rather than at every step.
        """
        outer, self._finite = self._finite, FiniteFlags()
        try:
            with targets_checked_once():
                yield
            self._finite.check(self.name)
        finally:
            self._finite = outer

    def _note_finite(self, what: str, values: Tensor) -> None:
        """Record whether ``values`` ("logits" or "grad") are finite; outside a call (no flags
        collected) check at once."""
        if self._finite is not None:
            self._finite.note(what, values)
            return
        flags = FiniteFlags()
        flags.note(what, values)
        flags.check(self.name)

    def _forward(self, x: Tensor) -> Tensor:
        """``model(x)``, checked: a tensor (see :class:`~segshield.attacks.outputs.SelectOutput`
        for models returning tuples or dicts); NaN/Inf are flagged for the end of the call."""
        logits = self.model(x)
        if not isinstance(logits, Tensor):
            raise ModelOutputError(
                f"{self.name}: model must return a logits tensor, got {type(logits).__name__} "
                "(wrap the model in segshield.attacks.SelectOutput to pick one output)"
            )
        self._note_finite("logits", logits)
        return logits

    def _gradient(self, x: Tensor, targets: Tensor, loss: LossFn | None = None) -> Tensor:
        """∇_x of the summed per-sample loss at ``x``; one forward and one backward pass.

        ``loss`` overrides :attr:`loss` (a per-step objective). The batch sum gives every image
        the gradient of its own loss, since images do not interact (model in eval mode).
        """
        return self._evaluate(x, targets, loss)[1]

    def _evaluate(
        self, x: Tensor, targets: Tensor, loss: LossFn | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, grad, logits)`` at ``x`` from one forward and one backward pass: the
        per-sample loss ``(N,)`` (detached), ∇_x of its sum (as :meth:`_gradient`) and the
        logits (detached). Attacks that track their best iterate (APGD: the highest loss for
        its restarts, the lowest pixel accuracy for its result) need all three."""
        x = x.detach().requires_grad_(True)
        logits = self._forward(x)
        value = (self.loss if loss is None else loss)(logits, targets)
        if value.shape != (x.shape[0],):
            raise ValueError(
                f"{self.name}: loss must return one value per sample, shape ({x.shape[0]},), "
                f"got {tuple(value.shape)}"
            )
        # Input-only gradient: parameter .grad fields stay untouched, no graph is retained.
        (grad,) = torch.autograd.grad(value.sum(), x)
        self._note_finite("grad", grad)
        return value.detach(), grad, logits.detach()

    @staticmethod
    def _step(x: Tensor, images: Tensor, grad: Tensor, alpha: Budget, eps: Budget) -> Tensor:
        """One signed-gradient ascent step, projected to the ε-ball around ``images`` and [0, 1].

        Shapes: ``x``, ``images``, ``grad`` ``(N, C, H, W)``; ``alpha`` and ``eps`` floats or
        ``(N, 1, 1, 1)`` (one per sample, see :data:`Budget`). Because ``images`` lies in
        [0, 1], the final clamp keeps the point inside the ball. Subclasses with another
        geometry (L2, normalised steps) override it with the same signature.
        """
        x = x + alpha * grad.sign()
        x = torch.clamp(x, images - eps, images + eps)
        return x.clamp_(0.0, 1.0)

    def _iterate(
        self,
        images: Tensor,
        targets: Tensor,
        x_start: Tensor,
        steps: int,
        alpha: Budget,
        eps: Budget,
        *,
        loss_at_step: StepLoss | None = None,
    ) -> Tensor:
        """The shared loop: ``steps`` times ``x <- self._step(x, images, ∇_x L_t, alpha, eps)``.

        With the default :meth:`_step` that is ``x <- clip_[0,1](Π_ε(x + alpha * sign(∇_x L)))``.
        ``loss_at_step(logits, targets, step, steps) -> (N,)`` replaces :attr:`loss` by a
        per-step objective (``step`` counts from 0 to ``steps - 1``), e.g. SegPGD's schedule.
        ``x_start`` must already lie in the ε-ball and [0, 1]; returns a detached tensor.
        ``alpha`` / ``eps``: one float, or one value per sample (:data:`Budget`). No host sync.
        """
        x = x_start.detach()
        for step in range(steps):
            loss = None if loss_at_step is None else _bind_step(loss_at_step, step, steps)
            grad = self._gradient(x, targets, loss)
            x = self._step(x, images, grad, alpha, eps)
        return x.detach()

    # ------------------------------------------------------------------------------ helpers

    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"{self.name}: images must be a tensor, got {type(images).__name__}")
        if images.ndim not in (4, 5):
            raise ValueError(
                f"{self.name}: images must be 4-D (N, C, H, W) or 5-D volumes (N, C, D, H, W), "
                f"got shape {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(
                f"{self.name}: images must be floating point in [0, 1], got dtype {images.dtype}"
            )
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{self.name}: attacks need autograd; "
                "do not call them inside torch.inference_mode()"
            )
        if images.numel() == 0:
            return
        lo_v, hi_v = torch.stack(torch.aminmax(images.detach())).tolist()  # one sync per call
        # `not (a <= b)` also catches NaN.
        if not (lo_v >= 0.0 and hi_v <= 1.0):
            raise ValueError(
                f"{self.name}: images must lie in [0, 1], found values in [{lo_v:g}, {hi_v:g}]"
            )

    def _check_budgets(self, eps: Sequence[float], images: Tensor) -> tuple[float, ...]:
        if isinstance(eps, Tensor):
            eps = eps.detach().flatten().tolist()
        budgets = tuple(_check_eps(e) for e in eps)
        if len(budgets) != images.shape[0]:
            raise ValueError(
                f"{self.name}: {len(budgets)} budgets (eps) for a batch of {images.shape[0]}"
            )
        return budgets


def _bind_step(loss_at_step: StepLoss, step: int, steps: int) -> LossFn:
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        return loss_at_step(logits, targets, step, steps)

    return loss


def _check_steps(steps: int, owner: str, what: str = "steps") -> int:
    try:
        value = operator.index(steps)  # ints and NumPy integers, not floats
    except TypeError:
        value = None
    if value is None or isinstance(steps, bool) or value < 1:
        raise ValueError(f"{owner}: {what} must be an integer >= 1, got {steps!r}")
    return value


def _check_alpha(alpha: float | None, owner: str) -> float | None:
    return None if alpha is None else _check_eps(alpha, f"{owner}: alpha")
