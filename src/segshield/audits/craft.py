"""Crafting: adversarial images for one attack x loss over every epsilon, batch by batch on
the source model's device. The attacks themselves do no I/O and no seeding; the seeds come in
here (one generator per image and epsilon, seeded from the cell and the image's index)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from segshield.attacks import ATTACKS, Attack, get_attack, get_loss
from segshield.devices import module_device
from segshield.tasks import Task

from .config import AuditConfig
from .plan import CellGroup, attack_budget, attack_options, image_seed

log = logging.getLogger(__name__)

Sample = tuple[int, int]
"""``(k, j)``: image ``j`` of the shard at the group's ε number ``k``."""


def craft_group(
    model: torch.nn.Module,
    group: CellGroup,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    config: AuditConfig,
    first_index: int = 0,
    winners: dict[int, np.ndarray] | None = None,
) -> list[np.ndarray | Exception]:
    """Adversarial images (N, C, H, W) float32 (CPU) per epsilon of ``group``.

    images: (N, C, H, W) float in [0, 1], the shard whose first image is dataset index
    ``first_index``. labels: what the attack steers by (true labels, or target masks for
    targeted attacks). Each batch goes to the model's device (channels-last when
    ``config.channels_last``); the model is already placed there by the caller.

    Iterative attacks whose step loop takes per-sample budgets (BIM, PGD and its variants,
    DAG) run every (image, ε) pair of the group as one sample, ``config.batch_size`` samples
    per batch, each with its own ε and step size: several ε share a batch. Attacks with a
    random start draw sample (j, ε_k)'s start from its own CPU generator seeded
    :func:`~segshield.audits.plan.image_seed` (``group.seeds[k]``, ``first_index + j``), so a
    cell's images depend only on the cell, the seed and the image - never on the other attacks
    or epsilons, the batch size or the batch. The others (FGSM: one gradient for every ε;
    ASMA) run one ``sweep`` per batch of images. If a batch fails, each of its epsilons is
    retried alone; only the failing budgets are lost: their slot holds the exception.

    winners: filled for ensemble attacks (SEA, ``last_winners``): ε number -> (N,) int64, the
    member whose example each image kept.
    """
    budgets = [attack_budget(group.attack, e, images.shape[1:]) for e in group.epsilons]
    cls = ATTACKS[group.attack]
    if cls.stacks_budgets and cls.iterative:
        crafter = _Stacked(model, group, budgets, images, labels, task, config, first_index)
        out = crafter.run()
        if winners is not None:
            winners.update(crafter.winners)
        return out
    options = attack_options(group.attack, config, None)
    attacker = get_attack(group.attack, model, get_loss(group.loss), budgets[0], **options)
    device = module_device(model)
    per_eps: list[list[np.ndarray] | Exception] = [[] for _ in budgets]
    for i in range(0, len(images), config.batch_size):
        x = _to_device(images[i : i + config.batch_size], device, config.channels_last)
        y = task.loss_targets(labels[i : i + config.batch_size]).to(device)
        for k, adv in enumerate(_sweep(attacker, group.attack, x, y, budgets)):
            slot = per_eps[k]
            if isinstance(slot, Exception):
                continue
            if isinstance(adv, Exception):
                per_eps[k] = adv
            else:
                slot.append(_to_host(adv))
    return [s if isinstance(s, Exception) else np.concatenate(s) for s in per_eps]


@dataclass(frozen=True)
class _Stacked:
    """One group's stacked crafting: every (image, ε > 0) pair is a sample."""

    model: torch.nn.Module
    group: CellGroup
    budgets: list[float]
    images: np.ndarray  # (N, C, H, W), dataset indices first_index .. first_index + N - 1
    labels: np.ndarray
    task: Task
    config: AuditConfig
    first_index: int
    # ensembles: ε number -> (N,) member index per image (-1 until crafted)
    winners: dict[int, np.ndarray] = field(default_factory=dict)

    def run(self) -> list[np.ndarray | Exception]:
        """Per ε: (N, C, H, W) float32, or the exception that lost it.

        Samples go ε-major, ``config.batch_size`` per batch. If a batch fails, each of its
        epsilons is retried alone; an ε that fails is dropped from the later batches (its slot
        is the error). ε = 0 copies the images without running the model.
        """
        out: list[np.ndarray | Exception] = [self.images.astype(np.float32) for _ in self.budgets]
        n = len(self.images)
        pending = [(k, j) for k, b in enumerate(self.budgets) if b > 0.0 for j in range(n)]
        while pending := [s for s in pending if not isinstance(out[s[0]], Exception)]:
            chunk, pending = pending[: self.config.batch_size], pending[self.config.batch_size :]
            try:
                _store(out, chunk, self.attack(chunk))
                continue
            except Exception as exc:
                log.warning(
                    "%s batch failed (%s); retrying each epsilon alone", self.group.attack, exc
                )
            for k in sorted({k for k, _ in chunk}):
                alone = [s for s in chunk if s[0] == k]
                try:
                    _store(out, alone, self.attack(alone))
                except Exception as exc_k:
                    out[k] = exc_k
        return out

    def attack(self, samples: Sequence[Sample]) -> np.ndarray:
        """One batch of samples, each at its own budget: adversarial (B, C, H, W) float32 CPU.

        Random-start generators stay on the CPU (the attack moves the noise to the device), so
        the CPU and a GPU draw the same starts.
        """
        js = [j for _, j in samples]
        eps = [self.budgets[k] for k, _ in samples]
        gens = None
        if "generator" in ATTACKS[self.group.attack].param_names():
            seeds = self.group.seeds
            gens = [
                torch.Generator().manual_seed(image_seed(seeds[k], self.first_index + j))
                for k, j in samples
            ]
        options = attack_options(self.group.attack, self.config, gens)
        loss = get_loss(self.group.loss)
        attacker = get_attack(self.group.attack, self.model, loss, eps[0], **options)
        device = module_device(self.model)
        x = _to_device(self.images[js], device, self.config.channels_last)
        y = self.task.loss_targets(self.labels[js]).to(device)
        adv = _to_host(attacker(x, y, eps=eps))
        chosen = getattr(attacker, "last_winners", None)
        if chosen is not None:  # an ensemble: which member each sample kept
            for (k, j), w in zip(samples, chosen.cpu().tolist(), strict=True):
                self.winners.setdefault(k, np.full(len(self.images), -1, np.int64))[j] = w
        return adv


def _store(out: list[np.ndarray | Exception], samples: Sequence[Sample], adv: np.ndarray) -> None:
    """Write row r of ``adv`` (sample ``samples[r]`` = (k, j)) to image j of ε k's array."""
    for k in sorted({k for k, _ in samples}):
        slot = out[k]
        if isinstance(slot, Exception):
            continue
        rows = [r for r, (kk, _) in enumerate(samples) if kk == k]
        slot[[samples[r][1] for r in rows]] = adv[rows]


def _to_device(batch: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(B, C, H, W) images as a tensor on ``device`` (channels-last memory when asked)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _to_host(adv: torch.Tensor) -> np.ndarray:
    """Detached CPU float32 numpy copy of an adversarial batch (any memory format)."""
    return np.ascontiguousarray(adv.detach().to("cpu", torch.float32).numpy())


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
