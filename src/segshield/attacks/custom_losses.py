"""A team's own attack losses: ``package.module:fn`` or ``path/to/file.py:fn`` (imported with
the current folder on the import path, see :mod:`segshield.imports`), or callables a notebook
registers by name (:func:`registered_losses`); and :func:`validate_loss`, the check on one
real batch before an audit ascends one. :func:`segshield.attacks.get_loss` resolves them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor

from segshield.imports import import_object

__all__ = ["custom_loss", "is_custom_loss", "registered_losses", "validate_loss"]

LossFn = Callable[..., Tensor]

_REGISTERED: dict[str, LossFn] = {}  # in-memory losses by name, see registered_losses


@contextlib.contextmanager
def registered_losses(losses: Mapping[str, LossFn]) -> Iterator[None]:
    """While the block runs, :func:`get_loss` finds each callable by its name (a notebook's
    own losses, which have no importable ``mod:fn``). Built-in names cannot be shadowed."""
    from segshield.attacks.losses import LOSSES  # the registry imports this module

    clash = sorted(set(losses) & set(LOSSES))
    if clash:
        raise ValueError(f"loss name(s) {clash} are built-in losses; register under other names")
    saved = dict(_REGISTERED)
    _REGISTERED.update(losses)
    try:
        yield
    finally:
        _REGISTERED.clear()
        _REGISTERED.update(saved)


def is_custom_loss(name: object) -> bool:
    """Whether ``name`` is a user's loss: ``package.module:fn``, ``path/to/file.py:fn``
    (registry names have no colon), or a name :func:`registered_losses` holds."""
    return isinstance(name, str) and (":" in name or name in _REGISTERED)


def custom_loss(spec: str) -> LossFn:
    """The callable registered as ``spec``, or the one ``spec`` names (imported with the
    current folder on the import path). Check it on real data with :func:`validate_loss`.

    Raises ``ValueError`` (one line) when it cannot be imported or is not callable.
    """
    if spec in _REGISTERED:
        return _REGISTERED[spec]
    fn = import_object(
        spec.strip(), what="attack loss", example="package.module:loss", error=ValueError
    )
    if not callable(fn):
        raise ValueError(f"attack loss {spec!r} is {type(fn).__name__}, not a callable")
    return fn


def validate_loss(fn: LossFn, logits: Tensor, target: Tensor, name: str = "loss") -> None:
    """Check a loss on one real batch before an attack ascends it: ``fn(logits, target)``
    must return a finite ``(N,)`` tensor, each image's value must not depend on the other
    images of the batch (results are a function of the image, not of its batch), and the
    sum must have a finite gradient w.r.t. the logits. ``logits`` are detached here.

    Raises ``ValueError`` with one line naming ``name`` and what is wrong.
    """
    z = logits.detach().clone().requires_grad_(True)
    n, shapes = z.shape[0], f"logits {tuple(z.shape)} and targets {tuple(target.shape)}"
    try:
        value = fn(z, target)
        alone = fn(z[:1], target[:1]) if n > 1 else None
    except Exception as exc:  # the user's code: anything can be raised
        raise ValueError(f"loss {name!r} failed on {shapes}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, Tensor) or value.shape != (n,):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"loss {name!r} returned {got} on {shapes}: a per-image loss (N,) = ({n},) is "
            "needed (reduce every axis but the first, e.g. per_pixel.flatten(1).mean(1))"
        )
    if not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"loss {name!r} is NaN/Inf on {shapes} (values {value.tolist()[:4]})")
    if alone is not None and not (
        isinstance(alone, Tensor)
        and alone.shape == (1,)
        and torch.allclose(alone.detach(), value.detach()[:1], rtol=1e-4, atol=1e-6)
    ):
        raise ValueError(
            f"loss {name!r} gives image 0 a different value alone than in its batch: it mixes "
            "the images of a batch (e.g. a batch mean); compute each image's loss on its own"
        )
    grad = None
    if value.requires_grad:
        (grad,) = torch.autograd.grad(value.sum(), z, allow_unused=True)
    if grad is None:
        raise ValueError(
            f"loss {name!r} is not differentiable w.r.t. the logits (no gradient reaches them: "
            ".detach(), .item(), numpy, argmax or a threshold cut the graph)"
        )
    if not bool(torch.isfinite(grad).all()):
        raise ValueError(f"loss {name!r} has a NaN/Inf gradient w.r.t. the logits on {shapes}")
