"""Per-sample budgets: several ε stacked in one batch (``attack(x, y, eps=[...])``) equal the
ε-by-ε runs, respect each sample's own ball and step size, and NaN/Inf are still caught
though the check is read once per call (no per-step device-to-host sync)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import ATTACKS, BIM, PGD, get_attack
from segshield.errors import ModelOutputError

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case

EPSILONS = [1 / 255, 2 / 255, 4 / 255, 8 / 255]
STACKED = sorted(n for n, c in ATTACKS.items() if c.stacks_budgets)
RANDOM_START = [n for n in STACKED if "generator" in ATTACKS[n].param_names()]


def _gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _options(name: str, seeds: list[int] | None) -> dict[str, Any]:
    names = ATTACKS[name].param_names()
    opts: dict[str, Any] = {"steps": 4} if "steps" in names else {}
    if "max_steps" in names:  # ASMA
        opts.update(max_steps=3, tau=1e-2, beta=1e-2)
    if "generator" in names:
        opts["generator"] = _gens(seeds) if seeds is not None else None
    return opts


def _stack(case: Case, k: int) -> tuple[Tensor, Tensor]:
    reps = [1] * (case.images.ndim - 1)
    return case.images.repeat(k, *reps), case.targets.repeat(k, *[1] * (case.targets.ndim - 1))


def _per_eps(name: str, case: Case, eps: float, seeds: list[int]) -> Tensor:
    attack = get_attack(name, case.model, "bce", eps, **_options(name, seeds))
    return attack(case.images, case.targets)


def _stacked(name: str, case: Case, epsilons: list[float], seeds: list[list[int]]) -> Tensor:
    """All ε in one batch: sample k·N + i is image i at epsilons[k], seeded seeds[k][i]."""
    flat = [s for row in seeds for s in row]
    attack = get_attack(name, case.model, "bce", epsilons[0], **_options(name, flat))
    x, y = _stack(case, len(epsilons))
    n = case.images.shape[0]
    return attack(x, y, eps=[e for e in epsilons for _ in range(n)])


@pytest.mark.parametrize("name", STACKED)
def test_stacked_equals_per_eps(name: str, case: Case) -> None:
    n = case.images.shape[0]
    seeds = [[100 * k + i for i in range(n)] for k in range(len(EPSILONS))]
    stacked = _stacked(name, case, EPSILONS, seeds)
    for k, eps in enumerate(EPSILONS):
        alone = _per_eps(name, case, eps, seeds[k])
        if ATTACKS[name].norm == "L2":
            # The classifier's linear layer rounds differently at batch 16 and 4 on some
            # CPUs (last-bit logits); an L2 step is continuous in the gradient, so that
            # rounding survives as ~1 ulp. Signed (L∞) steps and the conv nets stay bitwise.
            torch.testing.assert_close(stacked[k * n : (k + 1) * n], alone, rtol=0, atol=1e-6)
        else:  # bitwise (CPU conv is batch-invariant for these tiny nets)
            assert torch.equal(stacked[k * n : (k + 1) * n], alone)


@pytest.mark.parametrize("name", RANDOM_START)
def test_stacked_random_starts_come_from_each_sample_generator(
    name: str, binary_case: Case
) -> None:
    """Swapping two samples' generators swaps exactly their results."""
    n = binary_case.images.shape[0]
    seeds = [[7 * k + i for i in range(n)] for k in range(2)]
    base = _stacked(name, binary_case, EPSILONS[2:], seeds)
    swapped = [row[:] for row in seeds]
    swapped[1][0], swapped[1][1] = seeds[1][1], seeds[1][0]
    other = _stacked(name, binary_case, EPSILONS[2:], swapped)
    assert torch.equal(base[: n + 0], other[:n])  # ε_0 untouched
    assert not torch.equal(base[n], other[n])
    assert torch.equal(base[n + 2 :], other[n + 2 :])


@pytest.mark.parametrize("name", ["bim", "pgd", "pgdl2"])
def test_stacked_does_not_depend_on_the_batch_size(name: str, binary_case: Case) -> None:
    n = binary_case.images.shape[0]
    seeds = [[11 * k + i for i in range(n)] for k in range(len(EPSILONS))]
    full = _stacked(name, binary_case, EPSILONS, seeds)
    x, y = _stack(binary_case, len(EPSILONS))
    eps = [e for e in EPSILONS for _ in range(n)]
    flat = [s for row in seeds for s in row]
    for size in (1, 3, 5):
        parts = []
        for i in range(0, len(eps), size):
            opts = _options(name, flat[i : i + size])
            attack = get_attack(name, binary_case.model, "bce", eps[i], **opts)
            parts.append(attack(x[i : i + size], y[i : i + size], eps=eps[i : i + size]))
        torch.testing.assert_close(torch.cat(parts), full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", STACKED)
def test_each_sample_stays_in_its_own_ball(name: str, binary_case: Case) -> None:
    n = binary_case.images.shape[0]
    seeds = [[i + 10 * k for i in range(n)] for k in range(len(EPSILONS))]
    adv = _stacked(name, binary_case, EPSILONS, seeds)
    x, _ = _stack(binary_case, len(EPSILONS))
    eps = torch.tensor([e for e in EPSILONS for _ in range(n)])
    delta = (adv - x).flatten(1)
    norm = delta.norm(dim=1) if ATTACKS[name].norm == "L2" else delta.abs().amax(dim=1)
    budget = eps * (x[0].numel() ** 0.5) if ATTACKS[name].norm == "L2" else eps
    assert bool((norm <= budget + 1e-6).all())
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    # and each moves: the small budgets are not the large one's
    assert bool((norm[:n] < EPSILONS[-1] * 0.5).all()) or ATTACKS[name].norm == "L2"


def test_default_alpha_follows_each_sample_budget(binary_case: Case) -> None:
    """One BIM step moves every interior pixel by exactly its sample's eps / 4."""
    n = binary_case.images.shape[0]
    x, y = _stack(binary_case, 2)
    eps = [2 / 255] * n + [8 / 255] * n
    adv = BIM(binary_case.model, "bce", 1.0, steps=1)(x, y, eps=eps)
    step = (adv - x).abs()
    inside = (x > 0.1) & (x < 0.9)
    for i, e in enumerate(eps):
        torch.testing.assert_close(step[i][inside[i]], torch.full_like(step[i][inside[i]], e / 4))


@pytest.mark.parametrize("name", [*STACKED, "asma"])
def test_zero_budget_samples_come_back_unchanged(name: str, binary_case: Case) -> None:
    n = binary_case.images.shape[0]
    opts = _options(name, list(range(n)))
    attack = get_attack(name, binary_case.model, "bce", 0.1, **opts)
    eps = [0.0, 4 / 255, 0.0, 8 / 255][:n]
    adv = attack(binary_case.images, binary_case.targets, eps=eps)
    assert torch.equal(adv[0], binary_case.images[0]) and torch.equal(adv[2], binary_case.images[2])
    assert torch.isfinite(adv).all()
    assert not torch.equal(adv[3], binary_case.images[3])


def test_non_stacking_attack_groups_budgets(binary_case: Case) -> None:
    """ASMA (no per-sample step loop) runs one batch per distinct budget: the same result."""
    n = binary_case.images.shape[0]
    asma = get_attack("asma", binary_case.model, "bce", 0.1, max_steps=3, tau=1e-2, beta=1e-2)
    x, y = _stack(binary_case, 2)
    adv = asma(x, y, eps=[0.02] * n + [0.05] * n)
    assert torch.equal(adv[:n], asma.with_eps(0.02)(binary_case.images, binary_case.targets))
    assert torch.equal(adv[n:], asma.with_eps(0.05)(binary_case.images, binary_case.targets))


def test_sweep_stacked_equals_sweep(binary_case: Case) -> None:
    attack = BIM(binary_case.model, "bce", 1 / 255, steps=3)
    epsilons = [0.0, 2 / 255, 6 / 255]
    plain = attack.sweep(binary_case.images, binary_case.targets, epsilons)
    stacked = attack.sweep(binary_case.images, binary_case.targets, epsilons, stacked=True)
    assert all(torch.equal(a, b) for a, b in zip(plain, stacked, strict=True))


def test_budget_count_must_match_the_batch(binary_case: Case) -> None:
    attack = PGD(binary_case.model, "bce", 0.1, steps=2)
    with pytest.raises(ValueError, match="3 budgets"):
        attack(binary_case.images, binary_case.targets, eps=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="eps"):
        attack(binary_case.images, binary_case.targets, eps=[0.1, -1.0, 0.1, 0.1])


# ------------------------------------------------------------------------- the NaN/Inf flag


class NaNAtStep(nn.Module):
    """``inner``, except forward number ``at`` (0-based) returns NaN logits (or, with
    ``in_grad``, finite logits whose input gradient is NaN)."""

    def __init__(self, inner: nn.Module, at: int, in_grad: bool = False) -> None:
        super().__init__()
        self.inner, self.at, self.in_grad, self.calls = inner, at, in_grad, 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        self.calls += 1
        if self.calls - 1 != self.at:
            return out
        if self.in_grad:
            return out + (torch.sqrt(x[:, :1] - 2.0) * 0.0).nan_to_num(0.0)  # finite, NaN gradient
        return out * float("nan")


@pytest.mark.parametrize("name", ["bim", "pgd", "pgdl2", "segpgd", "dag"])
@pytest.mark.parametrize("in_grad", [False, True])
def test_nan_at_a_later_step_still_raises(name: str, in_grad: bool, binary_case: Case) -> None:
    model = NaNAtStep(binary_case.model, at=2, in_grad=in_grad)
    attack = get_attack(name, model, "bce", 4 / 255, **_options(name, None))
    if in_grad:  # the gradient went first (the next logits are NaN too)
        what = r"input gradient contains NaN or Inf \(input shape \(4, 3, 16, 16\)\)"
    else:
        what = r"model output contains NaN or Inf \(logits shape \(4, 1, 16, 16\)\)"
    with pytest.raises(ModelOutputError, match=rf"^{name}: {what}$"):
        attack(binary_case.images, binary_case.targets)
    assert model.calls == 4  # the loop ran on: the flag is read once, at the end
    # the next call starts with a clean flag
    model.at = -1
    attack(binary_case.images, binary_case.targets)


@pytest.mark.parametrize("name", ["bim", "pgd", "pgdl2", "segpgd", "cospgd", "dag"])
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_no_host_sync_per_step(
    name: str, kind: str, case_factory: Any, host_reads: Callable[[], Any]
) -> None:
    case = case_factory(kind)
    counts = []
    for steps in (2, 7):
        opts = {**_options(name, list(range(4))), "steps": steps}
        attack = get_attack(name, case.model, "bce", 0.03, **opts)
        with host_reads() as reads:
            attack(case.images, case.targets, eps=[0.01, 0.02, 0.03, 0.04])
        counts.append(len(reads))
    assert counts[0] == counts[1], counts  # the same few reads per call, whatever the steps
    assert counts[0] <= 6, counts
