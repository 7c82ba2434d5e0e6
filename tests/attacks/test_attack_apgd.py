"""APGD / APGDL2: a trajectory computed by hand, a slow per-image reference of the paper's
Algorithm 1 (``steps`` updates, the most-fooled iterate returned), the checkpoint formula, SEA's
radius schedule, the returned point against every iterate (masked losses), strength against
PGD, balls, per-sample budgets, generators and the absence of per-step host syncs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import APGD, APGDL2, PGD, PGDL2, get_attack, get_loss
from segshield.attacks.apgd import TIE_RTOL, apgd_checkpoints, sea_stages
from segshield.attacks.layout import pixel_accuracy

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case, CaseFactory


# ----------------------------------------------------------------- a 1-D problem, by hand


class Recorder(nn.Module):
    """The identity, remembering every input it sees (the iterates)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().flatten()[0].item())
        return x


def concave(logits: Tensor, target: Tensor) -> Tensor:
    """``-(x - 0.6)²`` per sample: the maximum lies inside the ball, so the sign steps overshoot
    it and oscillate, and the step size must shrink."""
    return -((logits - 0.6) ** 2).flatten(1).sum(dim=1)


def _trajectory(cls: type[APGD], **params: Any) -> tuple[list[float], float]:
    """10 updates, 11 passes. The target 0 against the logit ``x > 0``: every iterate is fooled
    (pixel accuracy 0), so the returned most-fooled point is, by the tie rule, the highest-loss
    one."""
    model = Recorder()
    x0 = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    target = torch.zeros_like(x0)
    adv = cls(model, concave, 0.25, steps=10, random_start=False, **params)(x0, target)
    return model.seen, adv.item()


def test_trajectory_by_hand() -> None:
    """x⁰ = 0.5, ε = 0.25 (ball [0.25, 0.75]), η = 0.5, α = 0.75; checkpoints 3, 5, ..., 10.

    x¹ = clip(0.5 + 0.5) = 0.75; x² = 0.75 + .75(0.25 - 0.75) + .25(0.75 - 0.5) = 0.4375;
    x³ = 0.4375 + .75(0.75 - 0.4375) + .25(0.4375 - 0.75) = 0.59375, the best so far (and the
    only step of three that raised the loss: 1 < 0.75·3, so η = 0.25 at k = 3);
    x⁴ = 0.59375 + .75(0.75 - 0.59375) + .25(0.59375 - 0.4375) = 0.75;
    x⁵ = 0.75 + .75(0.5 - 0.75) + .25(0.75 - 0.59375) = 0.6015625, the new best (1 < 0.75·2:
    η = 0.125); x⁶ = 0.6015625 + .75(-0.125) + .25(0.6015625 - 0.75) = 0.470703125, worse, and
    so are the later ones: η halves at every 1-step checkpoint (0 successes), each time back to
    x⁵ with momentum 0: x⁷ = x⁵ - .75·0.0625, x⁸ = x⁵ - .75·0.03125, x⁹ = x⁵ - .75·0.015625,
    x¹⁰ = x⁵ - .75·0.0078125 (the 10th update: ``steps`` counts updates).
    """
    seen, best = _trajectory(APGD)
    x5 = 0.6015625
    expected = [0.5, 0.75, 0.4375, 0.59375, 0.75, x5, 0.470703125]
    expected += [x5 - 0.75 * eta for eta in (0.0625, 0.03125, 0.015625, 0.0078125)]
    assert seen == expected
    assert best == x5
    # one pixel: the L2 ball is the same interval and g / |g| the sign, up to the 1e-10 guard
    seen_l2, best_l2 = _trajectory(APGDL2)
    assert seen_l2 == pytest.approx(expected, abs=1e-7)
    assert best_l2 == pytest.approx(x5, abs=1e-7)


def test_condition_two_by_hand() -> None:
    """rho = 0 switches condition 1 off: η halves only where it did not halve at the last
    checkpoint and the best loss has not risen since (k = 5, 7, then 9; not 6, 8 and 10)."""
    seen, best = _trajectory(APGD, rho=0.0)
    x3 = 0.59375
    expected = [0.5, 0.75, 0.4375, x3, 0.75]  # k = 3: x³ improved, no halving
    expected += [0.75 + 0.75 * (0.25 - 0.75) + 0.25 * (0.75 - x3)]  # x⁵ = 0.4140625; η -> 0.25
    expected += [x3 + 0.75 * (0.75 - x3) + 0.25 * (x3 - 0.75)]  # x⁶ from x³ = 0.671875
    x6 = expected[-1]
    expected += [x6 + 0.75 * -0.25 + 0.25 * (x6 - x3)]  # x⁷ = 0.50390625; η -> 0.125
    expected += [x3 + 0.75 * 0.125 + 0.25 * (x3 - x6)]  # x⁸ from x³ = 0.66796875
    x8 = expected[-1]
    expected += [x8 + 0.75 * -0.125 + 0.25 * (x8 - x3)]  # x⁹ = 0.5927734375; η -> 0.0625
    expected += [x3 + 0.75 * 0.0625 + 0.25 * (x3 - x8)]  # x¹⁰ from x³ = 0.6220703125
    assert seen == expected
    assert best == x3


def test_checkpoints_follow_the_paper() -> None:
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]

    def paper(n: int) -> list[int]:  # p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
        p = [0.0, 0.22]
        while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0 + 1e-9:
            p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
        out: list[int] = []
        for q in p:  # ceil(p_j · n), rounded first: 0.41 · 100 is 41.000000000000004 in floats
            w = math.ceil(round(q * n, 6))
            if not out or w != out[-1]:
                out.append(w)
        return out

    for n in (1, 2, 5, 10, 37, 100, 250, 1000):
        assert apgd_checkpoints(n) == paper(n), n
    assert apgd_checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]


def test_sea_stages() -> None:
    assert sea_stages(10) == [(2.0, 3), (1.5, 3), (1.0, 4)]
    assert sea_stages(7) == [(2.0, 2), (1.5, 2), (1.0, 3)]
    assert sea_stages(1) == [(2.0, 0), (1.5, 0), (1.0, 1)]
    assert sum(s for _, s in sea_stages(300)) == 300


# ------------------------------------------------------------- a slow reference, per image


def reference_apgd(
    model: nn.Module,
    loss: Callable[..., Tensor],
    image: Tensor,
    target: Tensor,
    start: Tensor,
    eps: float,
    steps: int,
    *,
    rho: float,
    alpha: float,
    norm: str,
) -> Tensor:
    """Algorithm 1 of Croce & Hein (2020) for ONE image, with Python numbers and branches:
    ``steps`` updates, and the most-fooled iterate returned (lowest pixel accuracy, then the
    higher loss, then the earlier one)."""
    x0, y = image[None], target[None]

    def accuracy(logits: Tensor) -> float:  # binary / multi-label: logit > 0; else arg-max
        pred = (logits > 0).to(y.dtype) if logits.shape == y.shape else logits.argmax(dim=1)
        return (pred == y).double().mean().item()

    def evaluate(x: Tensor) -> tuple[float, Tensor, float]:
        x = x.clone().requires_grad_(True)
        logits = model(x)
        value = loss(logits, y)
        (grad,) = torch.autograd.grad(value.sum(), x)
        return value.item(), grad, accuracy(logits.detach())

    def project(x: Tensor) -> Tensor:
        if norm == "Linf":
            return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp(0, 1)
        delta = x - x0
        length = delta.norm().item()
        return (x0 + delta * min(1.0, eps / length if length > 0 else 1.0)).clamp(0, 1)

    def ascent(x: Tensor, grad: Tensor, eta: float) -> Tensor:
        if norm == "Linf":
            return project(x + eta * grad.sign())
        return project(x + eta * grad / (grad.norm().item() + 1e-10))

    def higher(a: float, b: float) -> bool:  # the documented tie rule
        return a > b + TIE_RTOL * abs(b)

    checks = apgd_checkpoints(steps)
    eta = 2 * eps
    x = x_prev = start[None]
    f, grad, acc = evaluate(x)
    f_prev, best_f, best_x, best_grad = f, f, x, grad
    adv_x, adv_acc, adv_f = x, acc, f
    successes, best_at_check, halved = 0, best_f, False
    for k in range(1, steps + 1):
        z = ascent(x, grad, eta)
        if k > 1:
            z = project(x + alpha * (z - x) + (1 - alpha) * (x - x_prev))
        x_prev, x = x, z
        f, grad, acc = evaluate(x)
        if acc < adv_acc or (acc == adv_acc and higher(f, adv_f)):
            adv_x, adv_acc, adv_f = x, acc, f
        successes += higher(f, f_prev)
        f_prev = f
        if higher(f, best_f):
            best_f, best_x, best_grad = f, x, grad
        if k in checks:
            since = k - checks[checks.index(k) - 1]
            cond1 = successes < rho * since
            cond2 = not halved and best_f <= best_at_check
            halved = cond1 or cond2
            if halved:
                eta /= 2
                x, grad, f_prev = best_x, best_grad, best_f
            successes, best_at_check = 0, best_f
    return adv_x[0]


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize(
    ("cls", "rho", "alpha", "random_start"),
    [
        (APGD, 0.75, 0.75, False),
        (APGD, 0.75, 0.75, True),
        (APGD, 0.0, 0.75, False),  # condition 2 only
        (APGD, 1.0, 0.5, True),
        (APGDL2, 0.75, 0.75, True),
        (APGDL2, 0.0, 1.0, False),
    ],
)
def test_matches_the_reference(
    cls: type[APGD],
    rho: float,
    alpha: float,
    random_start: bool,
    kind: str,
    case_factory: CaseFactory,
) -> None:
    case = case_factory(kind, n=3, dtype=torch.float64)
    eps = 6 / 255 if cls is APGD else 0.5
    loss = get_loss("dice_focal")
    seeds = [5, 6, 7]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    attack = cls(case.model, loss, eps, steps=20, rho=rho, momentum=alpha, generator=gens)
    attack.random_start = random_start
    got = attack(case.images, case.targets)
    starts = case.images
    if random_start:  # the start the attack draws, from a twin of each image's generator
        twins = [torch.Generator().manual_seed(s) for s in seeds]
        starts = cls(case.model, loss, eps, generator=twins)._random_start(case.images, eps)
    for i in range(3):
        expected = reference_apgd(
            case.model,
            loss,
            case.images[i],
            case.targets[i],
            starts[i],
            eps,
            20,
            rho=rho,
            alpha=alpha,
            norm=cls.norm,
        )
        torch.testing.assert_close(got[i], expected, rtol=0, atol=1e-6)


def _onto_ball(norm: str, x: Tensor, images: Tensor, eps: float) -> Tensor:
    """Per image onto the ``norm`` ball of radius ``eps`` around ``images``, and [0, 1]."""
    if norm == "Linf":
        return torch.minimum(torch.maximum(x, images - eps), images + eps).clamp(0, 1)
    delta = (x - images).flatten(1)
    length = delta.norm(dim=1)
    scale = torch.where(length > 0, (eps / length).clamp(max=1.0), torch.ones_like(length))
    return (images + (x - images) * scale.view(-1, 1, 1, 1)).clamp(0, 1)


@pytest.mark.parametrize("cls", [APGD, APGDL2])
@pytest.mark.parametrize("loss_name", ["masked_ce", "balanced_masked_ce"])
def test_sea_schedule_matches_the_reference(
    cls: type[APGD], loss_name: str, case_factory: CaseFactory
) -> None:
    """SEA's schedule is three reference runs (3, 3, 4 updates), each from the previous run's
    most-fooled point projected onto its ball, the first from the start drawn in the 2ε ball."""
    case = case_factory("multiclass", n=3, dtype=torch.float64)
    eps = 6 / 255 if cls is APGD else 0.5
    loss = get_loss(loss_name)
    seeds = [11, 12, 13]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    got = cls(case.model, loss, eps, steps=10, schedule="sea", generator=gens)(
        case.images, case.targets
    )
    twins = [torch.Generator().manual_seed(s) for s in seeds]
    x = cls(case.model, loss, eps, generator=twins)._random_start(case.images, 2 * eps)
    for factor, steps in sea_stages(10):
        x = _onto_ball(cls.norm, x, case.images, factor * eps)
        x = torch.stack(
            [
                reference_apgd(
                    case.model,
                    loss,
                    case.images[i],
                    case.targets[i],
                    x[i],
                    factor * eps,
                    steps,
                    rho=0.75,
                    alpha=0.75,
                    norm=cls.norm,
                )
                for i in range(3)
            ]
        )
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- behaviour


class Spy(nn.Module):
    """``inner``, remembering every input batch it sees (the iterates)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


@pytest.mark.parametrize("cls", [APGD, APGDL2])
@pytest.mark.parametrize("loss_name", ["masked_ce", "balanced_masked_ce", "bce"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "classification"])
def test_returns_the_most_fooled_iterate(
    cls: type[APGD], loss_name: str, kind: str, case_factory: CaseFactory
) -> None:
    """Per image the result is one of the iterates (the start included) and its pixel accuracy
    is the lowest of them all; among those, its loss is the highest (up to :data:`TIE_RTOL`)."""
    case = case_factory(kind, n=6, seed=2)
    eps = 8 / 255 if cls is APGD else 1.0
    spy = Spy(case.model)
    gens = [torch.Generator().manual_seed(i) for i in range(6)]
    adv = cls(spy, loss_name, eps, steps=20, generator=gens)(case.images, case.targets)
    assert len(spy.seen) == 21
    iterates = torch.stack(spy.seen)  # (21, N, C, H, W)
    loss = get_loss(loss_name)
    with torch.no_grad():
        logits = [case.model(x) for x in spy.seen]
        accs = torch.stack([pixel_accuracy(z, case.targets) for z in logits])  # (21, N)
        losses = torch.stack([loss(z, case.targets) for z in logits])
        adv_acc = pixel_accuracy(case.model(adv), case.targets)
    for i in range(6):
        same = [k for k in range(21) if torch.equal(iterates[k, i], adv[i])]
        assert same, i
        assert adv_acc[i] == accs[:, i].min() == accs[same[0], i]
        tied = accs[:, i] == accs[:, i].min()
        top = losses[tied, i].max()
        assert losses[same[0], i] >= top - TIE_RTOL * abs(top), i


def test_masked_losses_return_a_more_fooled_point_than_the_highest_loss(
    case_factory: CaseFactory,
) -> None:
    """The regression: with SEA's masked losses the highest-loss iterate (what APGD used to
    return) is often less fooled than the returned point, never more."""
    gaps = []
    for kind in ("binary", "multiclass"):
        for seed in (0, 1, 2):
            case = case_factory(kind, n=4, seed=seed)
            spy = Spy(case.model)
            gens = [torch.Generator().manual_seed(i) for i in range(4)]
            adv = APGD(spy, "masked_ce", 8 / 255, steps=20, generator=gens)(
                case.images, case.targets
            )
            with torch.no_grad():
                logits = [case.model(x) for x in spy.seen]
                losses = torch.stack([get_loss("masked_ce")(z, case.targets) for z in logits])
                accs = torch.stack([pixel_accuracy(z, case.targets) for z in logits])
                adv_acc = pixel_accuracy(case.model(adv), case.targets)
            at_max_loss = accs.gather(0, losses.argmax(dim=0, keepdim=True))[0]
            gaps.append(at_max_loss - adv_acc)
    gap = torch.cat(gaps)
    assert bool((gap >= 0).all()), gap
    assert float(gap.max()) > 0.01, gap  # some images: over 1% of the pixels more fooled


def test_masked_ce_more_steps_fool_more(case_factory: CaseFactory) -> None:
    """APGD with masked_ce at 20 and 40 steps is never less fooled than its own random start
    (the same seeded draw); over 12 seeded batches (three layouts) 40 steps fool at least as
    much as 20 on average, and 20 APGD updates at least as much as 20 PGD steps."""
    accs: dict[str, list[Tensor]] = {"start": [], "pgd": [], "20": [], "40": []}
    eps = 8 / 255

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(10 + i) for i in range(4)]

    for kind in ("binary", "multiclass", "multilabel"):
        for seed in range(4):
            case = case_factory(kind, n=4, seed=seed)
            apgd = APGD(case.model, "masked_ce", eps, generator=gens())
            points = {"start": apgd._random_start(case.images, eps)}
            points["pgd"] = PGD(case.model, "masked_ce", eps, steps=20, generator=gens())(
                case.images, case.targets
            )
            for steps in (20, 40):
                attack = APGD(case.model, "masked_ce", eps, steps=steps, generator=gens())
                points[str(steps)] = attack(case.images, case.targets)
            with torch.no_grad():
                for key, x in points.items():
                    accs[key].append(pixel_accuracy(case.model(x), case.targets))
    acc = {key: torch.cat(v) for key, v in accs.items()}
    assert bool((acc["20"] <= acc["start"]).all()) and bool((acc["40"] <= acc["start"]).all())
    mean = {key: float(v.mean()) for key, v in acc.items()}
    assert mean["40"] <= mean["20"] <= mean["pgd"] < mean["start"], mean


def test_at_least_as_strong_as_pgd(case_factory: CaseFactory) -> None:
    """Same number of passes (20: PGD's 20 steps, APGD's 19 updates and its start), same seeded
    starts: APGD's result is about as fooled as PGD's in every case (pixel accuracy at most
    half a percent higher) and more fooled on average (on these nearly linear nets both end
    near the corner, so most differences are a few pixels)."""
    gains = []
    for kind in ("binary", "multilabel", "multiclass", "classification"):
        for seed in (0, 1):
            case = case_factory(kind, n=4, seed=seed)
            for attack_cls, base_cls, eps in ((APGD, PGD, 4 / 255), (APGDL2, PGDL2, 0.5)):
                accs = []
                for cls, steps in ((base_cls, 20), (attack_cls, 19)):
                    gens = [torch.Generator().manual_seed(i) for i in range(4)]
                    adv = cls(case.model, "bce", eps, steps=steps, generator=gens)(
                        case.images, case.targets
                    )
                    with torch.no_grad():
                        accs.append(pixel_accuracy(case.model(adv), case.targets).mean().item())
                gains.append(accs[0] - accs[1])
                assert gains[-1] > -0.005, (kind, seed, attack_cls.name, accs)
    assert sum(gains) / len(gains) > 0.0, gains


def _ball(cls: type[APGD], adv: Tensor, images: Tensor) -> Tensor:
    delta = (adv - images).flatten(1)
    return delta.norm(dim=1) if cls.norm == "L2" else delta.abs().amax(dim=1)


@pytest.mark.parametrize("cls", [APGD, APGDL2])
@pytest.mark.parametrize("schedule", [None, "sea"])
def test_ball_range_and_schedule(cls: type[APGD], schedule: str | None, case: Case) -> None:
    eps = 4 / 255 if cls is APGD else 0.5
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    attack = cls(case.model, "bce", eps, steps=10, schedule=schedule, generator=gens)
    adv = attack(case.images, case.targets)
    assert bool((_ball(cls, adv, case.images) <= eps + 1e-6).all())
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert not torch.equal(adv, case.images)
    with torch.no_grad():
        clean = get_loss("bce")(case.model(case.images), case.targets)
        attacked = get_loss("bce")(case.model(adv), case.targets)
    assert attacked.sum().item() > clean.sum().item()


@pytest.mark.parametrize("cls", [APGD, APGDL2])
def test_sea_schedule_uses_the_larger_balls_first(cls: type[APGD], binary_case: Case) -> None:
    """The first stage's iterates reach beyond ε (up to 2ε), the last stage's stay inside."""
    eps = 4 / 255 if cls is APGD else 0.5
    seen: list[Tensor] = []

    class Spy(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            seen.append(x.detach().clone())
            return binary_case.model(x)

    attack = cls(Spy(), "bce", eps, steps=10, schedule="sea", random_start=False)
    attack(binary_case.images, binary_case.targets)
    norms = torch.stack([_ball(cls, x, binary_case.images) for x in seen])  # (13, N)
    assert norms.shape == (13, 4)  # 3 + 3 + 4 updates, each stage evaluating its start too
    assert float(norms[:4].max()) > 1.9 * eps and float(norms[:4].max()) <= 2 * eps + 1e-6
    assert float(norms[4:8].max()) <= 1.5 * eps + 1e-6
    assert float(norms[8:].max()) <= eps + 1e-6


@pytest.mark.parametrize("name", ["apgd", "apgdl2"])
@pytest.mark.parametrize("schedule", [None, "sea"])
def test_per_sample_budgets_equal_per_budget_runs(
    name: str, schedule: str | None, binary_case: Case
) -> None:
    scale = 1.0 if name == "apgd" else 64.0  # L2 radii of a similar strength
    budgets = [scale * e for e in (2 / 255, 4 / 255, 8 / 255)]
    n = binary_case.images.shape[0]
    x = binary_case.images.repeat(3, 1, 1, 1)
    y = binary_case.targets.repeat(3, 1, 1, 1)

    def gens(k: int, count: int) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(100 * k + i) for i in range(count)]

    flat = [g for k in range(3) for g in gens(k, n)]
    stacked = get_attack(name, binary_case.model, "bce", 1.0, schedule=schedule, generator=flat)(
        x, y, eps=[b for b in budgets for _ in range(n)]
    )
    for k, eps in enumerate(budgets):
        alone = get_attack(
            name, binary_case.model, "bce", eps, schedule=schedule, generator=gens(k, n)
        )
        expected = alone(binary_case.images, binary_case.targets)
        torch.testing.assert_close(stacked[k * n : (k + 1) * n], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["apgd", "apgdl2"])
def test_per_image_generators_make_batches_independent(name: str, binary_case: Case) -> None:
    seeds = [3, 1, 4, 1]
    eps = 4 / 255 if name == "apgd" else 0.5

    def run(images: Tensor, targets: Tensor, s: list[int]) -> Tensor:
        gens = [torch.Generator().manual_seed(v) for v in s]
        attack = get_attack(name, binary_case.model, "bce", eps, schedule="sea", generator=gens)
        return attack(images, targets)

    batch = run(binary_case.images, binary_case.targets, seeds)
    for i, seed in enumerate(seeds):
        one = run(binary_case.images[i : i + 1], binary_case.targets[i : i + 1], [seed])
        torch.testing.assert_close(batch[i : i + 1], one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["apgd", "apgdl2"])
def test_no_host_sync_per_step(
    name: str, case_factory: CaseFactory, host_reads: Callable[[], Any]
) -> None:
    case = case_factory("multiclass")
    counts = []
    for steps, schedule in ((2, None), (12, None), (12, "sea")):
        gens = [torch.Generator().manual_seed(i) for i in range(4)]
        attack = get_attack(
            name, case.model, "bce", 0.03, steps=steps, schedule=schedule, generator=gens
        )
        with host_reads() as reads:
            attack(case.images, case.targets, eps=[0.01, 0.02, 0.03, 0.04])
        counts.append(len(reads))
    assert counts[0] == counts[1] == counts[2], counts
    assert counts[0] <= 6, counts


def test_options_and_params(binary_case: Case) -> None:
    m = binary_case.model
    attack = APGD(m, "bce", 0.25, generator=torch.Generator())
    params = attack.attack_params()
    assert params == {
        "eps": 0.25,
        "steps": 10,
        "rho": 0.75,
        "momentum": 0.75,
        "schedule": None,
        "random_start": True,
    }
    assert json.loads(json.dumps(params)) == params
    assert APGDL2(m, "bce", 1.0, schedule="sea").attack_params()["schedule"] == "sea"
    assert APGD.param_names() == APGDL2.param_names()
    assert APGD.param_names() == [
        "steps",
        "random_start",
        "generator",
        "rho",
        "momentum",
        "schedule",
    ]
    assert (APGD.norm, APGDL2.norm, APGD.stacks_budgets, APGDL2.stacks_budgets) == (
        "Linf",
        "L2",
        True,
        True,
    )
    for bad in (-0.1, 1.5, float("nan"), "x", True):
        with pytest.raises(ValueError, match="rho"):
            APGD(m, "bce", 0.1, rho=bad)
    for bad in (0.0, -0.1, 1.5, float("nan"), "x", True):  # α = 0 would ignore the gradient
        with pytest.raises(ValueError, match=r"momentum .* in \(0, 1\]"):
            APGD(m, "bce", 0.1, momentum=bad)
    assert APGD(m, "bce", 0.1, momentum=1).momentum == 1.0  # no momentum
    assert APGDL2(m, "bce", 0.1, rho=0, momentum=1e-3).momentum == 1e-3
    with pytest.raises(ValueError, match=r"schedule.*\[None, 'sea'\]"):
        APGD(m, "bce", 0.1, schedule="linear")
    with pytest.raises(ValueError, match="steps"):
        APGD(m, "bce", 0.1, steps=0)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alpha'\]"):
        APGD(m, "bce", 0.1, alpha=0.01)  # APGD sets its own step size


def test_one_pass_per_step_with_the_schedule(binary_case: Case) -> None:
    """``steps`` updates: ``steps + 1`` passes; under SEA's schedule each stage with updates
    evaluates its start too (stages 0, 0, 1 at 1 step; 0, 0, 2 at 2; 2, 2, 3 at 7)."""
    calls = []

    class Count(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            calls.append(1)
            return binary_case.model(x)

    for schedule, expected in (
        (None, {1: 2, 2: 3, 7: 8, 10: 11}),
        ("sea", {1: 2, 2: 3, 7: 10, 10: 13}),
    ):
        for steps, passes in expected.items():
            calls.clear()
            APGD(Count(), "bce", 4 / 255, steps=steps, schedule=schedule)(
                binary_case.images, binary_case.targets
            )
            assert len(calls) == passes, (schedule, steps)


@pytest.mark.parametrize("cls", [APGD, APGDL2])
@pytest.mark.parametrize("schedule", [None, "sea"])
def test_one_step_moves_without_a_random_start(
    cls: type[APGD], schedule: str | None, binary_case: Case
) -> None:
    """``steps=1`` makes one update (it used to return the clean images)."""
    eps = 4 / 255 if cls is APGD else 0.5
    attack = cls(binary_case.model, "bce", eps, steps=1, random_start=False, schedule=schedule)
    adv = attack(binary_case.images, binary_case.targets)
    assert bool((_ball(cls, adv, binary_case.images) > 0.5 * eps).all())
