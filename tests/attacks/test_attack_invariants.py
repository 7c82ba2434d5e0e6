"""Invariants every registered attack must satisfy, on binary, multi-label, multi-class and
classification models.

Norm- and goal-aware: L2 attacks are checked against a per-image L2 ball (which also bounds the
L-infinity change), and targeted attacks (ASMA, whose ``targets`` are masks to reach) must move
*towards* their targets instead of raising the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import (
    ATTACKS,
    BIM,
    FGSM,
    PGD,
    Attack,
    LossFn,
    get_attack,
    get_loss,
    iou_to_target,
)
from segshield.errors import ModelOutputError

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case, CaseFactory

KINDS = ["binary", "multilabel", "multiclass", "classification"]
EPSILONS = [1 / 255, 4 / 255, 8 / 255]
ATTACK_NAMES = sorted(ATTACKS)
UNTARGETED = sorted(n for n, cls in ATTACKS.items() if not cls.targeted)
TARGETED = sorted(n for n, cls in ATTACKS.items() if cls.targeted)
RANDOM_START = sorted(n for n, cls in ATTACKS.items() if "random_start" in cls.param_names())
# ASMA's reference step multipliers (tau=1e-7, beta=1e-6) are tuned for a large U-Net and 2500
# steps; the tiny 16x16 test models need bigger steps, and fewer suffice.
# SEA runs its four default members (APGD with SEA's three losses, SegPGD) at 5 steps each.
TEST_PARAMS: dict[str, dict[str, Any]] = {
    "asma": {"tau": 1e-3, "beta": 1e-2, "max_steps": 20},
    "sea": {"steps": 5},
}


class CountingModel(nn.Module):
    """Wraps a model and counts forward passes and backward passes through its output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forwards = 0
        self.backwards = 0

    def forward(self, x: Tensor) -> Tensor:
        self.forwards += 1
        out = self.inner(x)
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: Tensor) -> None:
        self.backwards += 1


class ConstantModel(nn.Module):
    """Outputs a constant (e.g. NaN) map that still depends on the input for autograd."""

    def __init__(self, value: float, channels: int = 1) -> None:
        super().__init__()
        self.value = value
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        out = x[:, :1].repeat(1, self.channels, 1, 1) * 0.0
        return out + self.value


def build(
    name: str, case: Case | nn.Module, eps: float, loss: LossFn | str = "bce", **params: Any
) -> Attack:
    """The attack with test-sized options and, where it has one, a seeded random start."""
    model = case if isinstance(case, nn.Module) else case.model
    params = {**TEST_PARAMS.get(name, {}), **params}
    if "generator" in ATTACKS[name].param_names():  # seeded random start
        params.setdefault("generator", torch.Generator().manual_seed(123))
    return get_attack(name, model, loss, eps, **params)


def deterministic(name: str, case: Case, eps: float) -> Attack:
    """The attack with its random start (if any) switched off."""
    params = {"random_start": False} if name in RANDOM_START else {}
    return build(name, case, eps, **params)


def assert_in_ball(name: str, adv: Tensor, images: Tensor, eps: float, tol: float) -> None:
    delta = (adv - images).flatten(1)
    assert delta.abs().max().item() <= eps + tol  # L2 <= eps implies this too
    if ATTACKS[name].norm == "L2":
        # x0 + δ is rounded per value, so ‖δ‖₂ may exceed eps by about sqrt(C·H·W) ulp
        assert torch.linalg.vector_norm(delta, dim=1).max().item() <= eps + 10 * tol
    else:
        assert ATTACKS[name].norm == "Linf"


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_ball_range_shape_dtype(name: str, eps: float, case: Case) -> None:
    before = case.images.clone()
    adv = build(name, case, eps)(case.images, case.targets)
    assert adv.shape == case.images.shape
    assert adv.dtype == case.images.dtype
    assert adv.device == case.images.device
    assert not adv.requires_grad and adv.grad_fn is None
    assert_in_ball(name, adv, case.images, eps, 1e-6)
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    assert not torch.equal(adv, case.images)  # it moved
    assert torch.equal(case.images, before)  # input untouched


@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_float64_preserved(name: str, kind: str, case_factory: CaseFactory) -> None:
    case = case_factory(kind, dtype=torch.float64)
    adv = build(name, case, 4 / 255)(case.images, case.targets)
    assert adv.dtype == torch.float64
    assert_in_ball(name, adv, case.images, 4 / 255, 1e-12)


@pytest.mark.parametrize("loss_name", ["bce", "dice", "focal", "dice_focal"])
@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("name", UNTARGETED)
@pytest.mark.parametrize("kind", KINDS)
def test_loss_does_not_decrease(
    name: str,
    eps: float,
    loss_name: str,
    kind: str,
    case_factory: CaseFactory,
) -> None:
    case = case_factory(kind)
    loss = get_loss(loss_name)
    adv = build(name, case, eps, loss=loss)(case.images, case.targets)
    with torch.no_grad():
        clean = loss(case.model(case.images), case.targets).sum().item()
        attacked = loss(case.model(adv), case.targets).sum().item()
    assert attacked >= clean - 1e-6
    if eps >= 4 / 255:
        assert attacked > clean + 1e-4  # and it really does something at a visible budget


@pytest.mark.parametrize("eps", [*EPSILONS, 1.0])
@pytest.mark.parametrize("name", TARGETED)
@pytest.mark.parametrize("kind", KINDS)
def test_targeted_moves_towards_target(
    name: str, eps: float, kind: str, case_factory: CaseFactory
) -> None:
    """Targeted attacks: the loss *to the target* does not rise, the IoU with it does not fall."""
    case = case_factory(kind)
    target = case.targets  # used as the masks to reach
    adv = build(name, case, eps)(case.images, target)
    with torch.no_grad():
        clean_logits, adv_logits = case.model(case.images), case.model(adv)
    clean_loss = get_loss("bce")(clean_logits, target)
    adv_loss = get_loss("bce")(adv_logits, target)
    clean_iou, adv_iou = iou_to_target(clean_logits, target), iou_to_target(adv_logits, target)
    assert adv_loss.sum().item() <= clean_loss.sum().item() + 1e-6
    assert adv_iou.mean().item() >= clean_iou.mean().item()
    if eps >= 4 / 255 and kind != "classification":  # 4 labels only move in big steps
        assert adv_loss.sum().item() < clean_loss.sum().item() - 1e-4
        assert adv_iou.mean().item() > clean_iou.mean().item()


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_eps_zero_returns_input(name: str, case: Case) -> None:
    counting = CountingModel(case.model)
    attack = build(name, case, 0.0)
    attack.model = counting
    adv = attack(case.images, case.targets)
    assert torch.equal(adv, case.images)
    assert adv is not case.images and adv.data_ptr() != case.images.data_ptr()
    assert counting.forwards == 0  # nothing to optimise, so the model is not even run


BATCH_CASES = [
    *ATTACK_NAMES,  # deterministic form: random_start=False where there is one
    *(f"{name}-random-start" for name in RANDOM_START),  # one seeded generator per image
]


def _per_image(name: str, case: Case, seeds: list[int]) -> Attack:
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return build(name, case, 4 / 255, generator=gens)


@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_independence(name: str, case: Case) -> None:
    """An image's adversarial example does not depend on the rest of its batch (random
    starts too: the audit draws them from one generator per image)."""
    n = case.images.shape[0]
    if name.endswith("-random-start"):
        base = name.removesuffix("-random-start")
        batch = _per_image(base, case, list(range(n)))(case.images, case.targets)
        singles = [_per_image(base, case, [i]) for i in range(n)]
    else:
        attack = deterministic(name, case, 4 / 255)
        batch = attack(case.images, case.targets)
        singles = [attack] * n
    for i, single in enumerate(singles):
        one = single(case.images[i : i + 1], case.targets[i : i + 1])
        torch.testing.assert_close(batch[i : i + 1], one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("training", [False, True])
def test_parameter_grads_and_mode_untouched(name: str, training: bool, case: Case) -> None:
    case.model.train(training)
    build(name, case, 4 / 255)(case.images, case.targets)
    assert case.model.training is training
    assert all(p.grad is None for p in case.model.parameters())
    assert all(p.requires_grad for p in case.model.parameters())
    # existing gradients (e.g. mid-training) are neither zeroed nor accumulated into
    for p in case.model.parameters():
        p.grad = torch.full_like(p, 0.5)
    build(name, case, 4 / 255)(case.images, case.targets)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in case.model.parameters())


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_works_inside_no_grad(name: str, binary_case: Case) -> None:
    expected = deterministic(name, binary_case, 4 / 255)(binary_case.images, binary_case.targets)
    with torch.no_grad():
        got = deterministic(name, binary_case, 4 / 255)(binary_case.images, binary_case.targets)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_non_finite_model_output_raises(name: str, value: float, binary_case: Case) -> None:
    attack = build(name, ConstantModel(value), 4 / 255)
    with pytest.raises(ModelOutputError, match=rf"^{name}: .*NaN or Inf"):
        attack(binary_case.images, binary_case.targets)


@pytest.mark.parametrize("eps", EPSILONS)
def test_fgsm_equals_one_step_bim(eps: float, case: Case) -> None:
    fgsm = FGSM(case.model, "dice_focal", eps)(case.images, case.targets)
    bim = BIM(case.model, "dice_focal", eps, steps=1, alpha=eps)(case.images, case.targets)
    assert torch.equal(fgsm, bim)
    # and the closed form clip(x + eps * sign(grad), 0, 1)
    x = case.images.clone().requires_grad_(True)
    loss = get_loss("dice_focal")(case.model(x), case.targets).sum()
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(fgsm, (case.images + eps * grad.sign()).clamp(0, 1))


def test_pgd_without_random_start_equals_bim(case: Case) -> None:
    pgd = PGD(case.model, "bce", 4 / 255, steps=5, alpha=1 / 255, random_start=False)
    bim = BIM(case.model, "bce", 4 / 255, steps=5, alpha=1 / 255)
    assert torch.equal(pgd(case.images, case.targets), bim(case.images, case.targets))


def test_fgsm_sweep_one_gradient_for_all_eps(case: Case) -> None:
    epsilons = [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
    counting = CountingModel(case.model)
    results = FGSM(counting, "bce", 1 / 255).sweep(case.images, case.targets, epsilons)
    assert counting.forwards == 1
    assert counting.backwards == 1
    assert len(results) == len(epsilons)
    for eps, adv in zip(epsilons, results, strict=True):
        assert torch.equal(adv, FGSM(case.model, "bce", eps)(case.images, case.targets))
        assert not adv.requires_grad


def test_fgsm_single_call_is_one_pass(binary_case: Case) -> None:
    counting = CountingModel(binary_case.model)
    FGSM(counting, "bce", 2 / 255)(binary_case.images, binary_case.targets)
    assert (counting.forwards, counting.backwards) == (1, 1)


def test_default_sweep_runs_each_eps(binary_case: Case) -> None:
    counting = CountingModel(binary_case.model)
    attack = BIM(counting, "bce", 1 / 255, steps=3)
    epsilons = [0.0, 2 / 255, 6 / 255]
    results = attack.sweep(binary_case.images, binary_case.targets, epsilons)
    assert counting.forwards == 3 * 2  # eps=0 needs no pass
    assert counting.backwards == 3 * 2
    for eps, adv in zip(epsilons, results, strict=True):
        expected = BIM(binary_case.model, "bce", eps, steps=3)(
            binary_case.images, binary_case.targets
        )
        assert torch.equal(adv, expected)
        assert (adv - binary_case.images).abs().max().item() <= eps + 1e-6
    assert attack.eps == 1 / 255  # sweeping does not change the attack itself


# Ensembles (SEA: "members") run every member for `steps` and score each member's result with
# one more forward pass; test_attack_ensemble.py counts their passes.
@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, c in ATTACKS.items()
        if "steps" in c.param_names() and "members" not in c.param_names()
    ),
)
def test_iterative_step_count(name: str, binary_case: Case) -> None:
    """One forward and one backward pass per step, nothing more (DAG fixes its adversarial
    labels from the first step's forward pass). APGD's ``steps`` are the paper's updates, and
    it evaluates its start too (its result is the best iterate): one pass more."""
    counting = CountingModel(binary_case.model)
    build(name, counting, 4 / 255, steps=7)(binary_case.images, binary_case.targets)
    passes = 8 if name in ("apgd", "apgdl2") else 7
    assert (counting.forwards, counting.backwards) == (passes, passes)


def test_projection_holds_with_huge_step(case: Case) -> None:
    for cls in (BIM, PGD):
        adv = cls(case.model, "bce", 2 / 255, steps=3, alpha=1.0)(case.images, case.targets)
        assert (adv - case.images).abs().max().item() <= 2 / 255 + 1e-6
        assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0


def test_pgd_random_start(binary_case: Case) -> None:
    images, targets = binary_case.images, binary_case.targets
    eps = 8 / 255

    def run(seed: int, **params: Any) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return PGD(binary_case.model, "bce", eps, generator=gen, **params)(images, targets)

    assert torch.equal(run(5), run(5))  # same generator seed, same result
    assert not torch.equal(run(5), run(6))
    # alpha=0 leaves the start point: uniform noise inside the ball, clipped to [0, 1]
    start = run(5, steps=1, alpha=0.0)
    delta = start - images
    assert delta.abs().max().item() <= eps + 1e-6
    inside = (images > eps) & (images < 1 - eps)  # pixels the [0, 1] clip cannot touch
    assert delta[inside].abs().max().item() > 0.9 * eps
    assert abs(delta[inside].mean().item()) < 0.1 * eps
    assert start.min().item() >= 0.0 and start.max().item() <= 1.0
