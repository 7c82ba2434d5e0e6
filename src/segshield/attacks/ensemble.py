"""SEA: the segmentation ensemble attack with a per-image worst case."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segshield.attacks.base import Attack, _check_steps
from segshield.attacks.layout import iou_to_target
from segshield.attacks.losses import LossFn, get_loss

__all__ = ["DEFAULT_MEMBERS", "SEA", "Member", "parse_members"]

Score = Callable[[Tensor, Tensor], Tensor]
"""``score(logits, targets) -> (N,)``: how well the model still does on each image (lower is a
stronger attack); the default is the per-image foreground IoU of the hard prediction."""

DEFAULT_MEMBERS: tuple[str, ...] = (
    "apgd:masked_ce",
    "apgd:balanced_masked_ce",
    "apgd:js",
    "segpgd:*",
)
"""APGD with each of SEA's three losses (under SEA's radius schedule), plus SegPGD with the
cell's own loss ("*")."""

Member = tuple[str, str]
"""``(attack name, loss name)``; the loss "*" stands for the ensemble's own loss."""


def parse_members(specs: Sequence[str]) -> tuple[Member, ...]:
    """``["apgd:js", "pgd:*", "fgsm"]`` -> ``(("apgd", "js"), ("pgd", "*"), ("fgsm", "*"))``.

    Names are lower-cased; a missing loss means "*". Raises ``ValueError`` for an empty list or
    an empty name. Whether the names exist is checked when the ensemble is built.
    """
    members = []
    for spec in specs:
        attack, _, loss = str(spec).strip().lower().partition(":")
        if not attack:
            raise ValueError(f"ensemble member {spec!r}: give ATTACK or ATTACK:LOSS")
        members.append((attack, loss.strip() or "*"))
    if not members:
        raise ValueError("an ensemble needs at least one member")
    return tuple(members)


class SEA(Attack):
    """SEA, Croce, Singh & Hein, 2024, "Towards Reliable Evaluation and Fast Training of Robust
    Semantic Segmentation Models" (ECCV; arXiv 2306.12941): run several complementary attacks
    and keep, per image, the adversarial example the model does worst on.

    L-infinity. Each member ``(attack, loss)`` runs on the whole batch at the same budget
    (``"*"`` as the loss: this ensemble's ``loss``); APGD members use SEA's radius schedule
    (2ε → 1.5ε → ε, ``schedule="sea"``). After each member the model scores every image
    (``score``, by default the foreground IoU of its hard prediction,
    :func:`~segshield.attacks.layout.iou_to_target`); an image keeps a member's result only
    when it scores strictly lower than the best so far, so ties go to the earlier member.
    Every member draws its random start from its own copy of the generators' state at the
    start of the call, so member ``k``'s example is exactly what it gives when run alone with
    those generators, and each image's score is ≤ the score of every member's own result, by
    construction (the generators end where one member's draw leaves them; with the default
    ``generator=None`` the members draw from torch's global RNG in turn).

    Options: ``members`` (default :data:`DEFAULT_MEMBERS`; ``"attack:loss"`` strings or
    pairs; every member must be an untargeted L-infinity attack; unknown names raise
    ``ValueError`` at construction), ``steps`` per member (default 10; an APGD member splits
    its ``steps`` updates over the three radii and returns its most-fooled iterate, at
    ``steps + 3`` passes for ``steps >= 4``, see :class:`~segshield.attacks.apgd.APGD`),
    ``random_start`` (default True; handed to the members that have one), ``generator`` (one
    torch.Generator or one per image, handed to the members that take one), ``score`` (see
    :data:`Score`).
    :attr:`last_winners` holds, after a call, the index of the member whose example each
    image kept ``(N,)`` int64 (-1 where no member ran: budget 0).

    Per-sample budgets (``attack(x, y, eps=[...])``) run as one batch in every member.
    NaN/Inf in any member's logits or gradients raise ``ModelOutputError`` ("sea: ...") once
    all members are done. Shapes and ranges: ``images`` ``(N, C, H, W)`` float in [0, 1];
    result same shape/dtype, in [0, 1], ``‖x_adv - x‖∞ <= eps`` (per sample with
    ``eps=[...]``).
    """

    name: ClassVar[str] = "sea"
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
        members: Sequence[str] | Sequence[Member] = DEFAULT_MEMBERS,
        random_start: bool = True,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        score: Score | None = None,
        **params: Any,
    ) -> None:
        super().__init__(model, loss, eps, **params)
        owner = type(self).__name__
        self.steps = _check_steps(steps, owner)
        if isinstance(members, str):  # one "attack:loss" string, not a sequence of letters
            members = [members]
        specs = [m if isinstance(m, str) else ":".join(m) for m in members]
        self.members = parse_members(specs)
        self._check_members()
        if not isinstance(random_start, bool):
            raise ValueError(f"{owner}: random_start must be a bool, got {random_start!r}")
        self.random_start = random_start
        self.generator = _check_generator(generator, owner)
        if score is not None and not callable(score):
            raise TypeError(f"{owner}: score must be callable, got {type(score).__name__}")
        self.score: Score = iou_to_target if score is None else score
        self.last_winners: Tensor | None = None
        for index in range(len(self.members)):  # bad member options fail here, not mid-audit
            self.member(index, self.eps)

    def _check_members(self) -> None:
        from segshield.attacks.registry import ATTACKS  # the registry imports this module

        for attack, loss in self.members:
            cls = ATTACKS.get(attack)
            if cls is None or attack == self.name:
                valid = sorted(n for n in ATTACKS if n != self.name)
                raise ValueError(f"SEA: unknown member attack {attack!r}; valid: {valid}")
            if cls.targeted or cls.norm != self.norm:
                raise ValueError(
                    f"SEA: member {attack!r} must be an untargeted {self.norm} attack "
                    f"(it is {'targeted' if cls.targeted else cls.norm})"
                )
            if loss != "*":
                get_loss(loss)  # unknown names fail here, before anything runs

    def member(
        self,
        index: int,
        eps: float,
        generator: torch.Generator | tuple[torch.Generator, ...] | None = None,
    ) -> Attack:
        """Member ``index`` built at budget ``eps`` with this ensemble's options (``generator``:
        the one it draws from; default this ensemble's)."""
        from segshield.attacks.registry import ATTACKS, get_attack

        attack, loss = self.members[index]
        names = set(ATTACKS[attack].param_names())
        options: dict[str, Any] = {}
        if "steps" in names:
            options["steps"] = self.steps
        if "random_start" in names:
            options["random_start"] = self.random_start
        if "generator" in names:
            options["generator"] = self.generator if generator is None else generator
        if "schedule" in names:
            options["schedule"] = "sea"
        return get_attack(attack, self.model, self.loss if loss == "*" else loss, eps, **options)

    def __call__(
        self, images: Tensor, targets: Tensor, eps: Sequence[float] | None = None
    ) -> Tensor:
        self.last_winners = None
        adv = super().__call__(images, targets, eps)
        if self.last_winners is None:  # every budget 0: no member ran
            n = images.shape[0]
            self.last_winners = torch.full((n,), -1, dtype=torch.long, device=images.device)
        return adv

    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        return self._perturb_at(images, targets, self.eps)

    def _perturb_at(
        self, images: Tensor, targets: Tensor, eps: float | tuple[float, ...]
    ) -> Tensor:
        """Every member on the whole batch; per image the lowest-scoring result so far."""
        per_sample = eps if isinstance(eps, tuple) else None
        n = images.shape[0]
        if isinstance(self.generator, tuple) and len(self.generator) != n:
            raise ValueError(f"{self.name}: {len(self.generator)} generators for a batch of {n}")
        best, best_score = images.clone(), None
        winners = torch.full((n,), -1, dtype=torch.long, device=images.device)
        states, last = _states(self.generator), None
        for index in range(len(self.members)):
            gens = _forked(self.generator, states)
            member = self.member(index, max(per_sample) if per_sample else float(eps), gens)
            adv = self._run_member(member, images, targets, per_sample)
            with torch.no_grad():
                score = self.score(self._forward(adv), targets).to(images.device)
            better = torch.ones_like(score, dtype=torch.bool)
            if best_score is not None:
                better = score < best_score
                best_score = torch.where(better, score, best_score)
            else:
                best_score = score
            best = torch.where(better.view(-1, *([1] * (images.ndim - 1))), adv, best)
            winners = torch.where(better, torch.full_like(winners, index), winners)
            last = gens
        if last is not None:
            _advance(self.generator, last)  # as far as one member's draw, like a PGD call
        if per_sample is not None:  # a zero budget ran no member: the image comes back as is
            ran = torch.tensor([e > 0.0 for e in per_sample], device=images.device)
            winners = torch.where(ran, winners, torch.full_like(winners, -1))
        self.last_winners = winners
        return best

    def _run_member(
        self, member: Attack, images: Tensor, targets: Tensor, eps: tuple[float, ...] | None
    ) -> Tensor:
        """``member``'s adversarial batch, its NaN/Inf flags collected with this call's (so they
        are read once, at the end, and reported under this ensemble's name)."""
        member._finite = self._finite
        try:
            if eps is None:
                return member._perturb(images, targets).detach()
            return member._perturb_at(images, targets, eps).detach()
        finally:
            member._finite = None

    def attack_params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "steps": self.steps,
            "members": [f"{a}:{loss}" for a, loss in self.members],
            "random_start": self.random_start,
            "selection": getattr(self.score, "__name__", type(self.score).__name__),
        }


Generators = torch.Generator | tuple[torch.Generator, ...] | None


def _check_generator(
    generator: torch.Generator | Sequence[torch.Generator] | None, owner: str
) -> Generators:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, Sequence) and not isinstance(generator, str | bytes):
        gens = tuple(generator)
        if all(isinstance(g, torch.Generator) for g in gens):
            return gens
    raise TypeError(
        f"{owner}: generator must be a torch.Generator, a sequence of them (one per image) or "
        f"None, got {type(generator).__name__}"
    )


def _states(generator: Generators) -> list[Tensor]:
    """The generators' states at the start of a call (none for the global RNG)."""
    if generator is None:
        return []
    gens = generator if isinstance(generator, tuple) else (generator,)
    return [g.get_state() for g in gens]


def _forked(generator: Generators, states: list[Tensor]) -> Generators:
    """Fresh generators (same devices) in ``states``: one member's private copies."""
    if generator is None:
        return None
    gens = generator if isinstance(generator, tuple) else (generator,)
    copies = []
    for g, state in zip(gens, states, strict=True):
        copy = torch.Generator(device=g.device)
        copy.set_state(state)
        copies.append(copy)
    return tuple(copies) if isinstance(generator, tuple) else copies[0]


def _advance(generator: Generators, used: Generators) -> None:
    """Move ``generator`` to the state of ``used`` (the copies a member drew from)."""
    gens = generator if isinstance(generator, tuple) else (generator,)
    done = used if isinstance(used, tuple) else (used,)
    for g, u in zip(gens, done, strict=True):
        if g is not None and u is not None:
            g.set_state(u.get_state())
