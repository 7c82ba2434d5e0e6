"""Attacks by name."""

from __future__ import annotations

from typing import Any

from torch import nn

from segshield.attacks.base import Attack
from segshield.attacks.bim import BIM
from segshield.attacks.fgsm import FGSM
from segshield.attacks.losses import LossFn
from segshield.attacks.pgd import PGD

__all__ = ["ATTACKS", "get_attack"]

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (FGSM, BIM, PGD)}


def get_attack(
    name: str, model: nn.Module, loss: LossFn | str, eps: float, **params: Any
) -> Attack:
    """Build the attack registered as ``name`` ("fgsm", "bim", "pgd"; case-insensitive).

    ``params`` go to the attack's constructor; unknown names or parameters raise ``ValueError``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid names: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key](model, loss, eps, **params)
