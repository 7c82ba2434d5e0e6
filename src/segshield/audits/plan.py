"""The cells of an audit and what each hands its attack: budgets, options, parameters and
target masks. Pure: nothing here runs an attack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segshield.attacks import (
    ATTACKS,
    empty_target,
    get_attack,
    get_loss,
    other_image_target,
    scaled_target,
    shifted_target,
)
from segshield.data import target_mask_from_file
from segshield.enums import TaskKind
from segshield.errors import SegShieldError
from segshield.results import AuditCell, clean_json

from .config import AuditConfig


@dataclass(frozen=True)
class CellGroup:
    """One attack x loss over every epsilon: crafted together (one sweep per batch)."""

    attack: str
    loss: str
    epsilons: tuple[float, ...]
    seed: int

    def cells(self) -> list[AuditCell]:
        return [
            AuditCell(AuditCell.make_id(self.attack, self.loss, e), self.attack, self.loss, e)
            for e in self.epsilons
        ]


def check_names(config: AuditConfig) -> None:
    """Unknown attack or loss names are input errors, found before anything runs."""
    unknown = [a for a in config.attacks if a not in ATTACKS]
    if unknown:
        raise SegShieldError(f"unknown attack(s) {unknown}; choose from {sorted(ATTACKS)}")
    for loss in config.losses:
        try:
            get_loss(loss)
        except ValueError as exc:
            raise SegShieldError(str(exc)) from exc


def skip_reason(attack: str, task: TaskKind) -> str | None:
    """Why an attack does not apply to a task, or None."""
    if task == TaskKind.CLASSIFICATION and ATTACKS[attack].targeted:
        return (
            "targeted attack: it needs labels to reach, and this audit attacks the true labels "
            "(untargeted)"
        )
    if task == TaskKind.MULTILABEL and ATTACKS[attack].targeted:
        return "targeted attack: its targets are one mask per image, not one per label"
    return None


def plan_groups(config: AuditConfig, attacks: list[str]) -> list[CellGroup]:
    """attack x loss groups in config order. The random-start seed is derived from the
    group's position (seed*1000 + attack*10 + loss), as in every earlier release."""
    return [
        CellGroup(
            attack, loss, tuple(float(e) for e in config.epsilons), config.seed * 1000 + a * 10 + k
        )
        for a, attack in enumerate(attacks)
        for k, loss in enumerate(config.losses)
    ]


def attack_budget(attack: str, eps: float, image_shape: tuple[int, ...]) -> float:
    """The budget handed to the attack for an audit epsilon (an L-infinity budget in [0, 1]).

    L2 attacks get the L2 radius of the L-infinity ball's corner, eps * sqrt(C*H*W): the
    largest L2 norm an L-infinity attack of the same epsilon can reach.
    """
    if ATTACKS[attack].norm == "L2":
        return float(eps * np.sqrt(np.prod(image_shape)))
    return float(eps)


def attack_options(attack: str, config: AuditConfig, gen: torch.Generator | None) -> dict:
    """The attack-specific constructor options the audit sets, by what the attack accepts."""
    names = set(ATTACKS[attack].param_names())
    opts: dict = {}
    if "steps" in names:
        opts["steps"] = config.steps
    if "alpha" in names and config.alpha is not None:
        opts["alpha"] = config.alpha
    if "generator" in names:
        opts["generator"] = gen
    if "max_steps" in names:  # ASMA
        opts.update(max_steps=config.asma_steps, tau=config.asma_tau, beta=config.asma_beta)
    return opts


def attack_params(
    attack: str,
    loss: str,
    eps: float,
    image_shape: tuple[int, ...],
    config: AuditConfig,
    model: torch.nn.Module,
) -> dict:
    """What the report records of one cell's attack: its constructor parameters, norm,
    targeting, and the L∞-equivalent epsilon of an L2 attack."""
    budget = attack_budget(attack, eps, image_shape)
    instance = get_attack(attack, model, loss, budget, **attack_options(attack, config, None))
    params = {k: v for k, v in instance.attack_params().items() if k != "generator"}
    params.update(norm=ATTACKS[attack].norm, targeted=ATTACKS[attack].targeted)
    if ATTACKS[attack].norm == "L2":
        params["eps_linf_equivalent"] = eps
    if ATTACKS[attack].targeted:
        params["target"] = config.target
    return clean_json(params)


def build_targets(spec: str, masks: np.ndarray, size: int) -> np.ndarray:
    """Target masks (N, 1, H, W) for targeted attacks (ASMA), built over the whole dataset so
    they do not depend on the batch size. spec: "empty" (hide the lesion), "other" (another
    image's mask), "shift:DY,DX", "scale:F", or "file:PATH" (one mask for every image)."""
    y = torch.from_numpy(masks.astype(np.float32))
    kind, _, arg = spec.partition(":")
    try:
        if kind == "empty":
            out = empty_target(y)
        elif kind == "other":
            out = other_image_target(y)
        elif kind == "shift":
            dy, dx = (int(v) for v in arg.split(","))
            out = shifted_target(y, dy, dx)
        elif kind == "scale":
            out = scaled_target(y, float(arg))
        elif kind == "file":
            mask = target_mask_from_file(Path(arg), (size, size))
            out = torch.from_numpy(np.repeat(mask[None].astype(np.float32), len(masks), axis=0))
        else:
            raise ValueError("unknown kind")
    except ValueError as exc:
        raise SegShieldError(
            f"target {spec!r}: {exc}; use empty, other, shift:DY,DX, scale:F or file:PATH"
        ) from exc
    return out.numpy().astype(np.uint8)
