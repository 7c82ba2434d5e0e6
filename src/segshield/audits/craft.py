"""Crafting: adversarial images for one attack x loss over every epsilon, batch by batch on
the source model. The attacks themselves do no I/O and no seeding; the seed comes in here."""

from __future__ import annotations

import logging

import numpy as np
import torch

from segshield.attacks import get_attack, get_loss
from segshield.tasks import Task

from .config import AuditConfig
from .plan import CellGroup, attack_budget, attack_options

log = logging.getLogger(__name__)


def craft_group(
    model: torch.nn.Module,
    group: CellGroup,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    config: AuditConfig,
) -> list[np.ndarray | Exception]:
    """Adversarial images (N, C, H, W) float32 per epsilon of ``group``.

    labels: what the attack steers by (true labels, or target masks for targeted attacks).
    One ``sweep`` per batch (FGSM: one gradient for every epsilon); if a sweep fails, each
    epsilon is retried alone so that only the failing budgets are lost: their slot holds the
    exception.
    """
    loss_fn = get_loss(group.loss)
    gen = torch.Generator().manual_seed(group.seed)
    budgets = [attack_budget(group.attack, e, images.shape[1:]) for e in group.epsilons]
    attacker = get_attack(
        group.attack, model, loss_fn, budgets[0], **attack_options(group.attack, config, gen)
    )
    per_eps: list[list[np.ndarray] | Exception] = [[] for _ in budgets]
    for i in range(0, len(images), config.batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + config.batch_size]))
        y = task.loss_targets(labels[i : i + config.batch_size])
        try:
            advs: list[torch.Tensor | Exception] = list(attacker.sweep(x, y, budgets))
        except Exception as exc:
            log.warning("%s sweep failed (%s); retrying each epsilon alone", group.attack, exc)
            advs = []
            for b in budgets:
                try:
                    advs.append(attacker.with_eps(b)(x, y))
                except Exception as exc_b:
                    advs.append(exc_b)
        for k, adv in enumerate(advs):
            slot = per_eps[k]
            if isinstance(slot, Exception):
                continue
            if isinstance(adv, Exception):
                per_eps[k] = adv
            else:
                slot.append(adv.detach().cpu().numpy().astype(np.float32))
    return [s if isinstance(s, Exception) else np.concatenate(s) for s in per_eps]
