"""Attacks by name."""

from __future__ import annotations

from typing import Any

from torch import nn

from segshield.attacks.apgd import APGD, APGDL2
from segshield.attacks.asma import ASMA
from segshield.attacks.base import Attack
from segshield.attacks.bim import BIM
from segshield.attacks.cospgd import CosPGD
from segshield.attacks.dag import DAG
from segshield.attacks.ensemble import SEA
from segshield.attacks.fgsm import FGSM
from segshield.attacks.losses import LossFn
from segshield.attacks.pgd import PGD
from segshield.attacks.pgdl2 import PGDL2
from segshield.attacks.segpgd import SegPGD

__all__ = ["ATTACKS", "get_attack"]

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, BIM, PGD, PGDL2, SegPGD, CosPGD, DAG, ASMA, APGD, APGDL2, SEA)
}
"""Every attack by name. ``cls.targeted`` tells whether ``targets`` are the labels to reach
(ASMA: target masks) or the true labels; ``cls.norm`` what ``eps`` bounds ("Linf" or "L2")."""


def get_attack(
    name: str, model: nn.Module, loss: LossFn | str, eps: float, **params: Any
) -> Attack:
    """Build the attack registered as ``name`` (a key of :data:`ATTACKS`; case-insensitive).

    ``params`` go to the attack's constructor; unknown names or parameters raise ``ValueError``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid names: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key](model, loss, eps, **params)
