"""The cells of an audit and what each hands its attack: budgets, options, parameters and
target masks. Pure: nothing here runs an attack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segshield.attacks import (
    ATTACKS,
    empty_target,
    get_attack,
    get_loss,
    is_custom_loss,
    other_image_target,
    scaled_target,
    shifted_target,
    validate_loss,
)
from segshield.data import target_mask_from_file
from segshield.enums import TaskKind
from segshield.errors import SegShieldError
from segshield.hashing import stable_seed
from segshield.results import AuditCell, clean_json
from segshield.tasks import Task

from .config import AuditConfig


@dataclass(frozen=True)
class CellGroup:
    """One attack x loss over every epsilon: crafted together (one sweep per batch).

    seeds: one random-start seed per epsilon (:func:`cell_seed`), a function of that cell's
    definition and the audit seed only.
    """

    attack: str
    loss: str
    epsilons: tuple[float, ...]
    seeds: tuple[int, ...]

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
        if is_custom_loss(loss) and "/" in loss:  # cell ids are "attack/loss/eps"
            raise SegShieldError(
                f"--losses {loss!r}: a loss named by a path with '/' cannot name a cell; run "
                "from the file's folder (file.py:fn) or use package.module:fn"
            )
        try:
            get_loss(loss)
        except ValueError as exc:
            raise SegShieldError(str(exc)) from exc
    for attack in (a for a in config.attacks if "members" in ATTACKS[a].param_names()):
        try:  # an ensemble checks its members' names when built (no model call)
            get_attack(attack, torch.nn.Identity(), "bce", 0.0, members=config.sea_members)
        except ValueError as exc:
            raise SegShieldError(f"--sea-members: {exc}") from exc


def validate_losses(
    config: AuditConfig,
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
) -> None:
    """Each user's loss (``mod:fn``) checked on the first batch before any attack runs
    (:func:`segshield.attacks.validate_loss`): a per-image ``(N,)`` finite loss,
    differentiable w.r.t. the logits. images/labels: the audited data; task: its Task."""
    custom = [loss for loss in config.losses if is_custom_loss(loss)]
    if not custom:
        return
    n = min(config.batch_size, len(images))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        logits = model(torch.from_numpy(images[:n]).to(device))
    target = task.loss_targets(labels[:n]).to(logits.device)
    for loss in custom:
        try:
            validate_loss(get_loss(loss), logits, target, loss)
        except ValueError as exc:
            raise SegShieldError(f"--losses {loss}: {exc}") from exc


def custom_losses(config: AuditConfig) -> list:
    """The users' loss callables the config names (their code is part of the resume key)."""
    return [get_loss(loss) for loss in config.losses if is_custom_loss(loss)]


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


def cell_definition(attack: str, loss: str, eps: float, config: AuditConfig) -> dict:
    """What decides one cell's adversarial images besides the images and the model: the
    attack, its loss, ε, the constructor options the audit sets (steps, alpha, ASMA's
    options — only those the attack takes), the target of a targeted attack, and the seed.
    Not the cell's position in the run, the other attacks, or the batch size."""
    options = attack_options(attack, config, None)
    options.pop("generator", None)
    definition = {
        "attack": attack,
        "loss": loss,
        "epsilon": float(eps),
        "options": clean_json(options),
        "seed": int(config.seed),
    }
    if ATTACKS[attack].targeted:
        definition["target"] = config.target
    return definition


def cell_seed(attack: str, loss: str, eps: float, config: AuditConfig) -> int:
    """The random-start seed of one cell: SHA-256 of its canonical :func:`cell_definition`
    (:func:`segshield.hashing.stable_seed`), the same in every process and every audit that
    contains the cell."""
    return stable_seed("cell", cell_definition(attack, loss, eps, config))


def image_seed(cell: int, index: int) -> int:
    """The random-start seed of image ``index`` (its position in the audited dataset) in the
    cell seeded ``cell``: independent of the batch size and of the batch the image is in."""
    return stable_seed("image", int(cell), int(index))


def plan_groups(config: AuditConfig, attacks: list[str]) -> list[CellGroup]:
    """attack x loss groups in config order; each ε's random-start seed is
    :func:`cell_seed` of that cell (earlier releases used the group's position in the run,
    seed*1000 + attack*10 + loss, so a cell changed with the attack list)."""
    groups = []
    for attack in attacks:
        for loss in config.losses:
            epsilons = tuple(float(e) for e in config.epsilons)
            seeds = tuple(cell_seed(attack, loss, e, config) for e in epsilons)
            groups.append(CellGroup(attack, loss, epsilons, seeds))
    return groups


def attack_budget(attack: str, eps: float, image_shape: tuple[int, ...]) -> float:
    """The budget handed to the attack for an audit epsilon (an L-infinity budget in [0, 1]).

    L2 attacks get the L2 radius of the L-infinity ball's corner, eps * sqrt(C*H*W): the
    largest L2 norm an L-infinity attack of the same epsilon can reach.
    """
    if ATTACKS[attack].norm == "L2":
        return float(eps * np.sqrt(np.prod(image_shape)))
    return float(eps)


def attack_options(
    attack: str, config: AuditConfig, gen: torch.Generator | Sequence[torch.Generator] | None
) -> dict:
    """The attack-specific constructor options the audit sets, by what the attack accepts.
    gen: the random-start generator(s), one per image of the batch in an audit."""
    names = set(ATTACKS[attack].param_names())
    opts: dict = {}
    if "steps" in names:
        opts["steps"] = config.steps
    if "alpha" in names and config.alpha is not None:
        opts["alpha"] = config.alpha
    if "generator" in names:
        opts["generator"] = gen
    if "members" in names:  # ensembles (SEA)
        opts["members"] = tuple(config.sea_members)
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
    targeting, the L∞-equivalent epsilon of an L2 attack, and the cell's random-start seed
    (:func:`cell_seed`) for an attack with a random start."""
    budget = attack_budget(attack, eps, image_shape)
    instance = get_attack(attack, model, loss, budget, **attack_options(attack, config, None))
    params = {k: v for k, v in instance.attack_params().items() if k != "generator"}
    params.update(norm=ATTACKS[attack].norm, targeted=ATTACKS[attack].targeted)
    if "generator" in ATTACKS[attack].param_names():  # image i starts from image_seed(this, i)
        params["random_start_seed"] = cell_seed(attack, loss, eps, config)
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
