"""Crafting: adversarial images for one attack x loss over every epsilon, batch by batch on
the source model. The attacks themselves do no I/O and no seeding; the seeds come in here
(one generator per image, seeded from the cell and the image's index)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from segshield.attacks import ATTACKS, Attack, LossFn, get_attack, get_loss
from segshield.tasks import Task

from .config import AuditConfig
from .plan import CellGroup, attack_budget, attack_options, image_seed

log = logging.getLogger(__name__)


def craft_group(
    model: torch.nn.Module,
    group: CellGroup,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    config: AuditConfig,
    first_index: int = 0,
) -> list[np.ndarray | Exception]:
    """Adversarial images (N, C, H, W) float32 per epsilon of ``group``.

    labels: what the attack steers by (true labels, or target masks for targeted attacks).
    Attacks with a random start (those taking a ``generator``) get one generator per image,
    seeded :func:`~segshield.audits.plan.image_seed` (the cell's seed, the image's index in
    ``images``), and are run ε by ε: a cell's images depend only on the cell, the seed and
    the image, never on the other attacks or epsilons, the batch size or the batch. The
    others run one ``sweep`` per batch (FGSM: one gradient for every epsilon); if a sweep
    fails, each epsilon is retried alone. Either way only the failing budgets are lost: their
    slot holds the exception.
    """
    loss_fn = get_loss(group.loss)
    budgets = [attack_budget(group.attack, e, images.shape[1:]) for e in group.epsilons]
    seeded = "generator" in ATTACKS[group.attack].param_names()
    options = attack_options(group.attack, config, None)
    attacker = get_attack(group.attack, model, loss_fn, budgets[0], **options)
    per_eps: list[list[np.ndarray] | Exception] = [[] for _ in budgets]
    for i in range(0, len(images), config.batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + config.batch_size]))
        y = task.loss_targets(labels[i : i + config.batch_size])
        indices = range(first_index + i, first_index + i + len(x))
        if seeded:
            advs = [
                _seeded(group, k, b, indices, model, loss_fn, config, x, y)
                for k, b in enumerate(budgets)
            ]
        else:
            advs = _sweep(attacker, group.attack, x, y, budgets)
        for k, adv in enumerate(advs):
            slot = per_eps[k]
            if isinstance(slot, Exception):
                continue
            if isinstance(adv, Exception):
                per_eps[k] = adv
            else:
                slot.append(adv.detach().cpu().numpy().astype(np.float32))
    return [s if isinstance(s, Exception) else np.concatenate(s) for s in per_eps]


def _seeded(
    group: CellGroup,
    k: int,
    budget: float,
    indices: range,
    model: torch.nn.Module,
    loss_fn: LossFn,
    config: AuditConfig,
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor | Exception:
    """One ε of a random-start attack on one batch, each image drawing its start from its
    own generator."""
    gens = [torch.Generator().manual_seed(image_seed(group.seeds[k], j)) for j in indices]
    try:
        options = attack_options(group.attack, config, gens)
        return get_attack(group.attack, model, loss_fn, budget, **options)(x, y)
    except Exception as exc:
        return exc


def _sweep(
    attacker: Attack, name: str, x: torch.Tensor, y: torch.Tensor, budgets: list[float]
) -> list[torch.Tensor | Exception]:
    try:
        return list(attacker.sweep(x, y, budgets))
    except Exception as exc:
        log.warning("%s sweep failed (%s); retrying each epsilon alone", name, exc)
    advs: list[torch.Tensor | Exception] = []
    for b in budgets:
        try:
            advs.append(attacker.with_eps(b)(x, y))
        except Exception as exc_b:
            advs.append(exc_b)
    return advs
